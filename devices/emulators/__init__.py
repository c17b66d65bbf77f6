"""Device emulators: the monitor side of each protocol, served on a pseudo-terminal (or TCP)."""

from __future__ import annotations

import importlib

from devices.emulators.base import DeviceEmulator

EMULATORS: dict[str, str] = {
    "hl7": "devices.emulators.hl7:HL7Emulator",
    "intellivue": "devices.emulators.intellivue:IntelliVueEmulator",
    "datex": "devices.emulators.datex:DatexEmulator",
    "masimo": "devices.emulators.masimo:MasimoEmulator",
}


def emulator_class(name: str) -> type[DeviceEmulator]:
    try:
        target = EMULATORS[name]
    except KeyError:
        raise ValueError(
            f"no emulator for protocol {name!r}; choose one of: {', '.join(EMULATORS)}"
        ) from None
    module_name, _, cls_name = target.partition(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    if not (isinstance(cls, type) and issubclass(cls, DeviceEmulator)):
        raise TypeError(f"{target} is not a DeviceEmulator")
    return cls
