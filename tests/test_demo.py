"""The README's main job, `mousebehav demo`, end to end (quick setting, posture descriptors to keep it short)."""
import json

import pandas as pd

from mousebehav.cli import main
from mousebehav.data import fetch_file
from mousebehav.video import probe


def test_demo_quick_posture_writes_the_report(tmp_path, capsys):
    out = tmp_path/'demo'
    rc = main(['demo', '--quick', '--backbone', 'posture', '--out', str(out), '--features-dir', str(tmp_path/'f'), '--quiet'])
    assert rc == 0
    assert 'report' in capsys.readouterr().out
    for f in ['report.md', 'metrics.json', 'confusion.png', 'ethogram.png', 'segmentation.png']:
        assert (out/f).stat().st_size > 200, f
    m = json.loads((out/'metrics.json').read_text())
    assert m['backbone'] == 'posture' and m['classes'] == ['crawling', 'grooming', 'rearing', 'scratching']
    assert m['n_sequences'] == 21 and {'logreg', 'paper', 'trees'} <= set(m['baselines'])
    e = m['ethogram']
    eth = pd.read_csv(out/e['csv'])
    assert len(eth) == probe(fetch_file('bsoid-panels', e['video'])).frame_count == e['frames']
    assert set(eth.label) <= set(m['classes'])
    report = (out/'report.md').read_text()
    assert '`posture` (13-d)' in report and 'mean+std extra trees' in report and '--backbone posture' in report
    assert not list(out.glob('.*partial*'))
