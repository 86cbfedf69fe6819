"""Shared test configuration. Each area keeps its fixtures in its own folder's conftest."""
