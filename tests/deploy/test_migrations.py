"""Migrations stay backward compatible for one release (docs/deploy.md): a release only
expands the schema, so the previous image keeps working against it and a rollback needs
no down-migration. Removing, renaming or tightening is a later "contract" release, listed
in CONTRACT_STEPS with its reason."""

from __future__ import annotations

import pytest
from django.db import migrations, models
from django.db.migrations.loader import MigrationLoader
from django.db.models.fields import NOT_PROVIDED

FERRY_APPS = {"controlplane", "endpoints", "transfers", "workers"}

# (app, migration name) → why it may contract the schema. Empty: none has yet.
CONTRACT_STEPS: dict[tuple[str, str], str] = {}

# Operations that break the previous release's code while it still runs.
CONTRACTING = (
    migrations.RemoveField,
    migrations.DeleteModel,
    migrations.RenameField,
    migrations.RenameModel,
    migrations.AlterField,
    migrations.AlterUniqueTogether,
    migrations.RunSQL,
)


def incompatibilities(migration: migrations.Migration) -> list[str]:
    """What in ``migration`` the previous release could not live with."""
    created = {op.name_lower for op in migration.operations if isinstance(op, migrations.CreateModel)}
    problems: list[str] = []
    for op in migration.operations:
        where = f"{migration.app_label}.{migration.name}: {op.describe()}"
        if isinstance(op, CONTRACTING):
            problems.append(f"{where} (contracts the schema)")
        elif isinstance(op, migrations.AddField) and op.model_name_lower not in created:
            field = op.field
            if not field.null and field.db_default is NOT_PROVIDED:
                # The previous release inserts rows without this column.
                problems.append(f"{where} (NOT NULL without a database default)")
    return problems


def ferry_migrations() -> list[migrations.Migration]:
    loader = MigrationLoader(None, ignore_no_migrations=True)
    return [m for (app, _), m in sorted(loader.disk_migrations.items()) if app in FERRY_APPS]


def test_every_migration_expands_the_schema_or_is_a_listed_contract_step():
    found = ferry_migrations()
    assert len(found) >= 8  # the loader saw Ferry's migrations
    problems = [
        problem
        for migration in found
        if not migration.initial and (migration.app_label, migration.name) not in CONTRACT_STEPS
        for problem in incompatibilities(migration)
    ]
    assert not problems, "\n".join(problems)
    assert all(reason.strip() for reason in CONTRACT_STEPS.values())


@pytest.mark.parametrize(
    ("operation", "flagged"),
    [
        (migrations.AddField("endpoint", "note", models.TextField(null=True)), False),
        (migrations.AddField("endpoint", "note", models.TextField(db_default="")), False),
        (migrations.AddField("endpoint", "note", models.TextField(default="")), True),
        (migrations.RemoveField("endpoint", "config"), True),
        (migrations.RenameField("endpoint", "name", "title"), True),
        (migrations.AlterField("endpoint", "name", models.CharField(max_length=50)), True),
        (migrations.DeleteModel("endpoint"), True),
        (migrations.AddIndex("endpoint", models.Index(fields=["name"], name="endpoint_name_idx")), False),
        (migrations.RunSQL("DROP TABLE x"), True),
    ],
)
def test_the_check_flags_what_breaks_the_previous_release(operation, flagged):
    migration = migrations.Migration("0099_example", "endpoints")
    migration.operations = [operation]
    assert bool(incompatibilities(migration)) is flagged


def test_a_not_null_column_of_a_new_table_is_fine():
    migration = migrations.Migration("0099_example", "endpoints")
    migration.operations = [
        migrations.CreateModel("Thing", [("id", models.BigAutoField(primary_key=True))]),
        migrations.AddField("thing", "size", models.IntegerField()),
    ]
    assert incompatibilities(migration) == []
