"""The sync targets, by the name used in ``SYNC_TARGETS``, routes, answers and logs. Adding one is a module here,
its line below, its emulator routes and its tests."""

from __future__ import annotations

from shared.targets import (
    android_managed_store,
    apple_push_certificate,
    dep_onboarding_settings,
    exchange_connectors,
    managed_devices,
    vpp_tokens,
    windows_autopilot_settings,
    windows_driver_update_profiles,
)
from shared.targets.base import Skip, SyncObject, Target

__all__ = ["DEFAULT", "JUDGED", "SYNC_TYPES", "TARGETS", "WATCHED", "Skip", "SyncObject", "Target", "permissions_for"]

TARGETS: dict[str, Target] = {
    target.name: target
    for target in (
        exchange_connectors.TARGET,
        vpp_tokens.TARGET,
        dep_onboarding_settings.TARGET,
        windows_autopilot_settings.TARGET,
        android_managed_store.TARGET,
        windows_driver_update_profiles.TARGET,
        managed_devices.TARGET,
    )
}
DEFAULT = (exchange_connectors.TARGET.name,)
# Every sync type a target's action takes, each once.
SYNC_TYPES = tuple(dict.fromkeys(kind for target in TARGETS.values() for kind in target.sync_types))
# What the expiry watch reads on every run, whichever targets are synced: Apple's push certificate and tokens,
# and Managed Google Play's binding.
WATCHED: dict[str, Target] = {
    target.name: target
    for target in (
        apple_push_certificate.TARGET,
        vpp_tokens.TARGET,
        dep_onboarding_settings.TARGET,
        android_managed_store.TARGET,
    )
}


# Judged from what a run that syncs them has read, never read for the watch alone: Autopilot's and the driver
# inventory's last sync.
JUDGED: dict[str, Target] = {
    target.name: target for target in (windows_autopilot_settings.TARGET, windows_driver_update_profiles.TARGET)
}


def permissions_for(names: tuple[str, ...]) -> tuple[str, ...]:
    """The Graph application permissions these targets need, each once, in the targets' order."""
    return tuple(dict.fromkeys(p for name in names for p in TARGETS[name].permissions))
