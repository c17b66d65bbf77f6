"""Protocol registry: ``--protocol`` names to classes."""

from __future__ import annotations

import importlib

from devices.protocols.base import DeviceProtocol

#: command-line name -> "module:Class"; imported lazily so one broken optional dependency cannot
#: take down the others.
PROTOCOLS: dict[str, str] = {
    "hl7": "devices.protocols.hl7:HL7Protocol",
    "intellivue": "devices.protocols.intellivue:IntelliVueProtocol",
    "datex": "devices.protocols.datex:DatexProtocol",
    "masimo": "devices.protocols.masimo:MasimoProtocol",
    "simulator": "devices.protocols.simulator:SimulatorProtocol",
}


class UnknownProtocolError(ValueError):
    pass


def protocol_class(name: str) -> type[DeviceProtocol]:
    try:
        target = PROTOCOLS[name]
    except KeyError:
        raise UnknownProtocolError(
            f"unknown protocol {name!r}; choose one of: {', '.join(sorted(PROTOCOLS))}"
        ) from None
    module_name, _, cls_name = target.partition(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    if not (isinstance(cls, type) and issubclass(cls, DeviceProtocol)):
        raise TypeError(f"{target} is not a DeviceProtocol")
    return cls


def wire_protocols() -> list[str]:
    """Protocols that speak to a real device (everything but the simulator)."""
    return [p for p in PROTOCOLS if p != "simulator"]
