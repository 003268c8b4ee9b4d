import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_shared = ROOT.parent/'shared'/'data'
if 'MOUSEBEHAV_DATA_DIR' not in os.environ and _shared.exists():
    os.environ['MOUSEBEHAV_DATA_DIR'] = str(_shared)


@pytest.fixture(scope='session')
def data_dir() -> Path:
    d = os.environ.get('MOUSEBEHAV_DATA_DIR')
    if not d: pytest.fail('set MOUSEBEHAV_DATA_DIR to the sample-data folder (e.g. ../shared/data)')
    return Path(d)


_field = ROOT.parent/'shared'/'field-cases'

@pytest.fixture(scope='session')
def field_cases() -> Path:
    "Small inputs shaped like real lab files (../shared/field-cases, or $MOUSEBEHAV_FIELD_CASES)."
    d = Path(os.environ.get('MOUSEBEHAV_FIELD_CASES', _field))
    if not d.exists(): pytest.fail(f'the field cases are missing: {d} (set MOUSEBEHAV_FIELD_CASES)')
    return d
