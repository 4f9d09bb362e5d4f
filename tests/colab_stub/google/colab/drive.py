"""Stub of google.colab.drive: records the mount instead of asking for Google Drive access."""

from google.colab import record


def mount(mountpoint: str, force_remount: bool = False, timeout_ms: int = 120000, readonly: bool = False) -> None:
    record("drive.mount", mountpoint)
