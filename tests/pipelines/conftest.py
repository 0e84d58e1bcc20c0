"""The tiny sentiment task of the tuning tests."""

from tests.tuning.conftest import tiny_task  # noqa: F401
