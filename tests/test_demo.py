"""The README's main job, `mousebehav demo`, end to end (quick setting): the frame model on posture descriptors as headline."""
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
    assert m['n_sequences'] == 21 and set(m['baselines']) == {'logreg', 'paper', 'trees'}
    assert m['model'] == 'frames' and m['model_kind'] == 'frames' and m['seeds_run'] == 3
    assert m['seeds']['accuracy'][0] == m['accuracy'] and len(m['seeds']['accuracy']) == 3
    assert m['seeds']['mean']['accuracy'] == sum(m['seeds']['accuracy']) / 3
    assert m['majority_rate'] == max(m['per_class'][c]['support'] for c in m['classes']) / 21
    assert m['accuracy'] >= m['majority_rate']
    e = m['ethogram']
    eth = pd.read_csv(out/e['csv'])
    assert len(eth) == probe(fetch_file('bsoid-panels', e['video'])).frame_count == e['frames']
    held = [p for p in m['predictions'] if p['video'] == e['video'] and p['crop'] == e['crop']]
    assert len(held) == 1 and held[0]['fold'] == e['fold']          # a panel of the fold whose model drew it
    assert set(eth.label) <= set(m['classes'])
    report = (out/'report.md').read_text()
    assert '`posture` (13-d)' in report and 'mean+std extra trees' in report and '--backbone posture' in report
    assert 'frame model (default)' in report and 'LSTM `paper`' in report and 'Majority-class rate' in report
    assert "LSTM `improved`" not in report and 'held-out panel' in report
    assert '![calibration' in report and (out/'calibration.png').stat().st_size > 200
    t = m['calibration']['frames']['temperature']
    assert f'--temperature {t:.3f}' in report                        # the figures live takes, from metrics.json
    assert not list(out.glob('.*partial*'))
