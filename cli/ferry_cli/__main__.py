from ferry_cli.app import main

main()
