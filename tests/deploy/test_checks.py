"""The checks of ``checks.py`` over fixture templates: silent on ``fixtures/good``, and on
``fixtures/bad`` reporting exactly the faults planted there (so none of them cannot fail)."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.management import get_commands

from controlplane.bootstrap import TABLE_INDEXES, TABLE_KEYS
from controlplane.resources import queues, tables
from tests.deploy import cfn, checks
from tests.deploy.test_templates import REQUIRED_CONDITIONS, SERVICES, UNSCOPABLE, app_queues, variables

FIXTURES = Path(__file__).resolve().parent / "fixtures"
GOOD = FIXTURES / "good"
BAD = FIXTURES / "bad"
STRONG_TABLES = [tables()["leases"], tables()["ledger"]]
INDEXES = {tables()[logical]: indexes for logical, indexes in TABLE_INDEXES.items()}


def params(directory: Path, name: str) -> dict[str, str] | None:
    path = directory / "params" / f"{name}.json"
    return checks.load_parameters(path) if path.is_file() else None


def every_problem(directory: Path) -> list[str]:
    """Every check over a fixture directory laid out like deploy/aws/."""
    region, global_ = cfn.load(directory / "region.yaml"), cfn.load(directory / "global.yaml")
    problems: list[str] = []
    for template in (region, global_):
        problems += checks.queue_dead_letters(template)
        problems += checks.bucket_protection(template)
        problems += checks.iam_wildcard_actions(template)
        problems += checks.iam_unscoped_resources(template, UNSCOPABLE, REQUIRED_CONDITIONS)
        problems += checks.log_retention(template)
        problems += checks.ecs_circuit_breakers(template)
    problems += checks.ecs_services(region, SERVICES)
    for name in ("us-east-1", "us-west-2"):
        q = queues(name)
        scope = variables(region, name, params(directory, name))
        problems += checks.service_commands(region, SERVICES, scope, [q.transfers, q.control])
        problems += checks.queue_names(region, scope, app_queues(name))
    files = {f"params/{name}.json": params(directory, name) for name in ("us-east-1", "us-west-2")}
    problems += checks.parameter_files(region, files)
    problems += checks.parameter_files(global_, {"params/global.json": params(directory, "global")})
    problems += checks.task_roles(region)
    problems += checks.image_tag(region)
    expected_tables = {name: TABLE_KEYS[logical] for logical, name in tables().items()}
    problems += checks.table_schemas(
        global_, variables(global_, "us-east-1", params(directory, "global")), expected_tables
    )
    problems += checks.strong_consistency(
        global_, variables(global_, "us-east-1", params(directory, "global")), STRONG_TABLES
    )
    problems += checks.table_indexes(global_, variables(global_, "us-east-1", params(directory, "global")), INDEXES)
    problems += checks.management_commands(region, get_commands())
    return problems


def test_good_fixture_has_no_problems():
    assert every_problem(GOOD) == []


def test_good_fixture_runs_management_commands():
    assert checks.manage_commands(cfn.load(GOOD / "region.yaml")) == [
        ("KeeperTask", "run_keeper"),
        ("EventsTask", "consume_events"),
        ("MigrateTask", "migrate"),
        ("MigrateTask", "bootstrap_aws"),
    ]


BAD_REGION = cfn.load(BAD / "region.yaml")
BAD_GLOBAL = cfn.load(BAD / "global.yaml")


@pytest.mark.parametrize(
    ("check", "expected"),
    [
        (
            lambda: checks.queue_dead_letters(BAD_REGION),
            [
                "queue TransfersQueue: RedrivePolicy.deadLetterTargetArn {'Fn::GetAtt': ['StagingBucket', 'Arn']} "
                "does not name a queue of this template (use !GetAtt <Queue>.Arn)",
                "queue TransfersQueue: RedrivePolicy has no maxReceiveCount",
            ],
        ),
        (
            lambda: checks.bucket_protection(BAD_REGION),
            [
                "bucket StagingBucket: no BucketEncryption.ServerSideEncryptionConfiguration",
                "bucket StagingBucket: PublicAccessBlockConfiguration does not set RestrictPublicBuckets to true",
                "bucket StagingBucket: VersioningConfiguration.Status is 'Suspended', not 'Enabled'",
            ],
        ),
        (
            lambda: checks.iam_wildcard_actions(BAD_REGION),
            [
                "ExecutionRole.Policies[0].PolicyDocument.Statement[0]: Allow with wildcard action *",
                "WorkerPolicy.PolicyDocument.Statement[0]: Allow with wildcard action dynamodb:*",
                "WorkerPolicy.PolicyDocument.Statement[2]: Allow with NotAction grants every other action",
            ],
        ),
        (
            lambda: checks.iam_unscoped_resources(BAD_REGION, UNSCOPABLE, REQUIRED_CONDITIONS),
            [
                'ExecutionRole.Policies[0].PolicyDocument.Statement[0]: Resource "*" for *, which can be scoped to '
                'resources (only actions in UNSCOPABLE may use "*")',
                'SharedRole.Policies[0].PolicyDocument.Statement[0] (Sid SendAnywhere): Resource "*" for '
                'sqs:SendMessage, which can be scoped to resources (only actions in UNSCOPABLE may use "*")',
                'WorkerPolicy.PolicyDocument.Statement[1]: cloudwatch:PutMetricData on "*" without a Condition on '
                "cloudwatch:namespace",
                "WorkerPolicy.PolicyDocument.Statement[2]: Allow with NotResource applies to every other resource",
            ],
        ),
        (
            lambda: checks.log_retention(BAD_REGION),
            ["log group LogGroup: no RetentionInDays (logs would be kept forever)"],
        ),
        (
            lambda: checks.ecs_circuit_breakers(BAD_REGION),
            [
                "service ApiService: DeploymentConfiguration.DeploymentCircuitBreaker does not set Enable and "
                "Rollback to true",
                "service WorkerService: DeploymentConfiguration.DeploymentCircuitBreaker does not set Rollback to true",
            ],
        ),
        (
            lambda: checks.ecs_services(BAD_REGION, SERVICES),
            [
                "service EventsService: missing (every region runs it)",
                "service AdminService: not one of Ferry's processes "
                "(ApiService, BeatService, EventsService, KeeperService, WorkerService)",
                "service BeatService: has Condition 'IsEast'; every region stack must run it",
            ],
        ),
        (
            lambda: checks.service_commands(
                BAD_REGION,
                SERVICES,
                variables(BAD_REGION, "us-west-2", None),
                [queues("us-west-2").transfers, queues("us-west-2").control],
            ),
            [
                "service ApiService (task definition AdminTask): Command 'python manage.py consume_events' "
                "does not run gunicorn",
                "service WorkerService (task definition WorkerTask): the worker consumes "
                "['ferry-us-west-2-transfers'], not ['ferry-us-west-2-control', 'ferry-us-west-2-transfers'] (-Q)",
                "service BeatService (task definition BeatTask): beat writes its schedule file to the working "
                "directory /app, which the image keeps read-only; pass --schedule /tmp/celerybeat-schedule",
                "service KeeperService (task definition KeeperTask): Command 'sh -c python manage.py migrate && "
                "python manage.py run_keepr' does not run 'manage.py run_keeper'",
            ],
        ),
        (
            lambda: checks.queue_names(BAD_REGION, variables(BAD_REGION, "us-east-1", None), app_queues("us-east-1")),
            [
                "UnnamedQueue: no QueueName; CloudFormation would invent one the app cannot know",
                "queue 'ferry-us-east-1-control' (region us-east-1): the app uses it; the template has no such queue",
                "queue 'ferry-us-east-1-control-dlq' (region us-east-1): the app uses it; the template has no such "
                "queue",
                "queue 'ferry-us-east-1-events' (region us-east-1): the app uses it; the template has no such queue",
                "queue 'ferry-us-east-1-events-dlq' (region us-east-1): the app uses it; the template has no such "
                "queue",
                "queue 'ferry-us-east-1-steps' (region us-east-1): the app uses it; the template has no such queue",
                "queue 'ferry-us-east-1-steps-dlq' (region us-east-1): the app uses it; the template has no such queue",
                "queue 'ferry-us-east-1-transfers-dlq' (region us-east-1): the app uses it; the template has no "
                "such queue",
                "queue OrphanQueue is named 'ferry-us-east-1-orphans' (region us-east-1); the app knows no such queue",
            ],
        ),
        (
            lambda: checks.parameter_files(
                BAD_REGION,
                {f"params/{name}.json": params(BAD, name) for name in ("us-east-1", "us-west-2", "eu-west-1")},
            ),
            [
                "params/us-east-1.json: sets Colour, which the template does not declare",
                "params/us-east-1.json: Stage='production' is not one of AllowedValues ['prod', 'staging']",
                "params/us-west-2.json: does not set Subnets, which has no Default",
                "params/eu-west-1.json: missing",
                "params/us-west-2.json: does not set Colour, Subnets, which another file sets",
            ],
        ),
        (
            lambda: checks.task_roles(BAD_REGION),
            [
                "task definition AdminTask: no TaskRoleArn",
                "task definition BeatTask: TaskRoleArn 'arn:aws:iam::123456789012:role/beat' does not reference "
                "an AWS::IAM::Role of this template",
                "task definition KeeperTask: task role ExecutionRole is also its execution role",
                "task definition WorkerTask: shares task role SharedRole with ApiTask",
            ],
        ),
        (
            lambda: checks.image_tag(BAD_REGION),
            [
                "parameter ImageTag: AllowedPattern '.*' accepts 'latest'",
                "task definition ApiTask, container 'api': Image 'ferry:latest' is not built from parameter ImageTag",
            ],
        ),
        (
            lambda: checks.table_schemas(
                BAD_GLOBAL,
                variables(BAD_GLOBAL, "us-east-1", None),
                {name: TABLE_KEYS[logical] for logical, name in tables().items()},
            ),
            [
                "ImportedTable: TableName {'Fn::ImportValue': 'other-stack-table-name'} cannot be evaluated "
                "offline (Fn::ImportValue is known only to CloudFormation)",
                "table 'ferry-config': the app uses it; the template has no such table",
                "table LeasesTable (ferry-leases): attribute 'pk' has type 'N', not 'S'",
                "table LedgerTable (ferry-ledger): KeySchema [('pk', 'HASH'), ('sk', 'RANGE')], the app "
                "expects [('pk', 'HASH')]",
                "table SettingsTable is named 'ferry-settings'; the app knows no such table",
            ],
        ),
        (
            lambda: checks.strong_consistency(BAD_GLOBAL, variables(BAD_GLOBAL, "us-east-1", None), STRONG_TABLES),
            [
                "table LeasesTable (ferry-leases): AWS::DynamoDB::GlobalTable with MultiRegionConsistency "
                "'EVENTUAL'; it must be an AWS::DynamoDB::GlobalTable with MultiRegionConsistency STRONG"
            ],
        ),
        (
            lambda: checks.table_indexes(BAD_GLOBAL, variables(BAD_GLOBAL, "us-east-1", None), INDEXES),
            [
                "table LedgerTable (ferry-ledger): index 'by-partition-delivered' KeySchema [('partition', 'HASH'), "
                "('updated_at', 'RANGE')], the app expects [('partition', 'HASH'), ('delivered_at', 'RANGE')]"
            ],
        ),
        (
            lambda: checks.management_commands(BAD_REGION, get_commands()),
            ["task definition KeeperTask: runs 'manage.py run_keepr', which Django does not know"],
        ),
    ],
    ids=[
        "dead-letter",
        "buckets",
        "wildcard-actions",
        "unscoped-resources",
        "log-retention",
        "circuit-breakers",
        "services",
        "service-commands",
        "queue-names",
        "parameter-files",
        "task-roles",
        "image-tag",
        "tables",
        "strong-consistency",
        "table-indexes",
        "management-commands",
    ],
)
def test_bad_fixture_reports_each_planted_fault(check, expected):
    assert check() == expected


def test_bad_fixture_global_template_is_clean_where_nothing_was_planted():
    for check in (
        checks.queue_dead_letters,
        checks.bucket_protection,
        checks.iam_wildcard_actions,
        checks.log_retention,
    ):
        assert check(BAD_GLOBAL) == []


def test_beat_schedule_may_be_given_as_an_equals_option():
    template = cfn.loads(
        """
Resources:
  BeatTask:
    Type: AWS::ECS::TaskDefinition
    Properties:
      ContainerDefinitions:
        - Name: beat
          Command: [celery, -A, controlplane.celery, beat, --schedule=/tmp/celerybeat-schedule]
  BeatService:
    Type: AWS::ECS::Service
    Properties:
      TaskDefinition: !Ref BeatTask
"""
    )
    assert checks.service_commands(template, {"BeatService": "beat"}, {}, []) == []


def test_parameter_file_format_errors_are_named(tmp_path):
    path = tmp_path / "p.json"
    path.write_text('{"ImageTag": "1.4.2"}')
    with pytest.raises(ValueError, match="a list of"):
        checks.load_parameters(path)
    path.write_text('[{"ParameterKey": "A", "ParameterValue": "1"}, {"ParameterKey": "A", "ParameterValue": "2"}]')
    with pytest.raises(ValueError, match=r"\[1\]: A is set twice"):
        checks.load_parameters(path)
    path.write_text('[{"Key": "A", "Value": "1"}]')
    with pytest.raises(ValueError, match=r"\[0\]: not a"):
        checks.load_parameters(path)


def test_a_database_task_without_the_writer_region_is_reported():
    template = cfn.loads(
        """
Resources:
  Told:
    Type: AWS::ECS::TaskDefinition
    Properties:
      ContainerDefinitions:
        - Name: api
          Environment:
            - { Name: DATABASE_URL, Value: postgres://db/ferry }
            - { Name: FERRY_DATABASE_WRITER_REGION, Value: !Ref DatabaseWriterRegion }
  Untold:
    Type: AWS::ECS::TaskDefinition
    Properties:
      ContainerDefinitions:
        - Name: worker
          Environment: [{ Name: DATABASE_URL, Value: postgres://db/ferry }]
  Hardcoded:
    Type: AWS::ECS::TaskDefinition
    Properties:
      ContainerDefinitions:
        - Name: keeper
          Environment:
            - { Name: DATABASE_URL, Value: postgres://db/ferry }
            - { Name: FERRY_DATABASE_WRITER_REGION, Value: us-east-1 }
  NoDatabase:
    Type: AWS::ECS::TaskDefinition
    Properties:
      ContainerDefinitions: [{ Name: sidecar, Environment: [] }]
"""
    )
    assert checks.database_writer_region(template) == [
        "task definition Untold, container 'worker': no FERRY_DATABASE_WRITER_REGION",
        "task definition Hardcoded, container 'keeper': FERRY_DATABASE_WRITER_REGION 'us-east-1' is not a Ref to "
        "parameter DatabaseWriterRegion",
    ]


def test_a_missing_index_and_an_index_key_of_the_wrong_type_are_reported():
    template = cfn.loads(
        """
Resources:
  Bare:
    Type: AWS::DynamoDB::GlobalTable
    Properties:
      TableName: bare
      AttributeDefinitions: [{AttributeName: pk, AttributeType: S}]
      KeySchema: [{AttributeName: pk, KeyType: HASH}]
  Stringly:
    Type: AWS::DynamoDB::GlobalTable
    Properties:
      TableName: stringly
      AttributeDefinitions:
        - {AttributeName: pk, AttributeType: S}
        - {AttributeName: partition, AttributeType: S}
        - {AttributeName: delivered_at, AttributeType: N}
      KeySchema: [{AttributeName: pk, KeyType: HASH}]
      GlobalSecondaryIndexes:
        - IndexName: by-partition-delivered
          KeySchema: [{AttributeName: partition, KeyType: HASH}, {AttributeName: delivered_at, KeyType: RANGE}]
          Projection: {ProjectionType: KEYS_ONLY}
"""
    )
    want = {"by-partition-delivered": ("partition", "delivered_at")}
    assert checks.table_indexes(template, {}, {"bare": want, "stringly": want}) == [
        "table Bare (bare): no global secondary index 'by-partition-delivered' "
        "[('partition', 'HASH'), ('delivered_at', 'RANGE')]",
        "table Stringly (stringly): index 'by-partition-delivered' attribute 'partition' has type 'S', not 'N'",
    ]
