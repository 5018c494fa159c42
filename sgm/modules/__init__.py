"""Modules configs name by ``sgm.modules.<Name>``."""

from sgm.modules.encoders.conditioner import GeneralConditioner

__all__ = ["GeneralConditioner"]
