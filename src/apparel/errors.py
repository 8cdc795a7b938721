"""Errors the CLI reports as one line (``error: ...``) instead of a stack trace."""


class ApparelError(Exception):
    """Base class: a failure with a message meant for the user."""


class ConfigError(ApparelError):
    """Settings are missing or invalid."""


class SourceError(ApparelError):
    """A source file, workbook or the store database does not hold what the pipeline needs."""


class SnapshotShrinkError(SourceError):
    """A master snapshot lost more of the held snapshot's keys than bronze.snapshot_max_loss_percent allows."""


class ShardError(SourceError):
    """A sharded store breaks its layout: an order id on more than one shard."""


class SetupError(ApparelError):
    """A prerequisite (Java, jars, a service) is missing."""


class AccountingError(ApparelError):
    """A run could not account for every row it read."""


class QueryError(ApparelError):
    """A query the engine rejected (its own message says why)."""


class MaintenanceError(ApparelError):
    """OPTIMIZE or VACUUM failed for one or more tables."""


class DeclarationError(ApparelError):
    """What a job was about to commit to a silver or gold table breaks its declared key or schema
    (src/apparel/catalog.py); nothing was committed."""
