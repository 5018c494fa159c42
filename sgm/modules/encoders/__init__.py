"""Condition encoders: the GeneralConditioner (``conditioner.py``) and the frozen T5 (``modules.py``)."""
