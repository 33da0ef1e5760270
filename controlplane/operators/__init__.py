"""Operators' identity: roles, the admin's second factor, SSO, and where the admin answers.

See docs/identity.md, "Operators".
"""
