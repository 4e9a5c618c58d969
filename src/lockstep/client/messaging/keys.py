"""Publishing this device's end-to-end keys (messaging.md §3, §7.1): the signed bundle once, a fallback key,
and one-time keys topped up whenever the server holds fewer than half the target."""

from __future__ import annotations

from lockstep.client.messaging.device import Device

ONE_TIME_KEYS_TARGET = 50


async def publish_keys(device: Device) -> int:
    """Upload the key bundle (once) and top one-time keys up to the target; returns how many left."""
    store, state = device.store, device.session.state
    fallback = None
    if store.bundle is None:
        keys = store.olm.device_keys(device.account_id, device.device_id, device.session.clock.now_ms())
        store.bundle = keys.seal(state.device_key()).to_json()
        fallback = store.olm.new_fallback_key().to_json()
        store.save(durable=True)
    result = await device.request("keys.upload", bundle=store.bundle, fallback_key=fallback)
    left = int(result["one_time_keys_left"])
    if left < ONE_TIME_KEYS_TARGET // 2:
        fresh = store.olm.new_one_time_keys(ONE_TIME_KEYS_TARGET - left)
        store.save(durable=True)  # private halves on disk before the public halves are out
        result = await device.request(
            "keys.upload", bundle=store.bundle, one_time_keys=[k.to_json() for k in fresh]
        )
        left = int(result["one_time_keys_left"])
    return left
