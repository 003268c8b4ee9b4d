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
