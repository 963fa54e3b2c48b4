"""Calibration data: the dataset spec grammar, offline and hub sources, and `get_calibration_data`."""

from .calib import allocate, check_dataset, default_dataset, get_calibration_data
from .sources import NAMED_SOURCES, hub_offline, read_local_file, resolve_source
from .spec import DatasetSpec, parse_dataset_spec

__all__ = ["DatasetSpec", "NAMED_SOURCES", "allocate", "check_dataset", "default_dataset", "get_calibration_data",
           "hub_offline", "parse_dataset_spec", "read_local_file", "resolve_source"]
