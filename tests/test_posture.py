"""Posture stores through the command line: `extract --backbone posture`, then bench classify, train and predict on them."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mousebehav.cli import main
from mousebehav.data import fetch_file
from mousebehav.features import features_path, load_features
from mousebehav.posture import POSTURE_COLUMNS
from mousebehav.video import probe


def test_extract_posture_cli_panel(tmp_path, capsys):
    video = fetch_file('bsoid-panels', 'locomote_hstacked.mp4')
    rc = main(['extract', f'{video}@450,0,900,360', '--backbone', 'posture', '--stride', '3', '--out', str(tmp_path), '--quiet'])
    assert rc == 0
    p = features_path(tmp_path, video, '450,0,900,360')
    assert str(p) in capsys.readouterr().out
    F = load_features(p)
    n = probe(video).frame_count
    assert F.features.shape == ((n + 2) // 3, len(POSTURE_COLUMNS)) and F.backbone == 'posture'
    assert F.frame_index.tolist() == list(range(0, n, 3)) and F.attrs['crop'] == '450,0,900,360'
    assert np.isfinite(F.features).all() and F.detected.mean() > 0.95
    speed = F.features[:, POSTURE_COLUMNS.index('speed')]
    assert 0.2 < np.median(speed) < 5          # a walking mouse: body lengths per second of file time
    assert not list(tmp_path.glob('*partial*')) and not list(tmp_path.glob('*writing*'))


def test_extract_posture_needs_a_segmentation(tmp_path, capsys):
    video = fetch_file('bsoid-clips', 'group2_example_1.avi')
    rc = main(['extract', str(video), '--backbone', 'posture', '--segmentation', 'none', '--out', str(tmp_path), '--quiet'])
    assert rc == 2 and 'need a segmentation' in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_bench_train_predict_on_posture(tmp_path):
    out = tmp_path/'run'
    rc = main(['bench', 'classify', '--dataset', 'bsoid-clips', '--classes', 'coarse', '--backbone', 'posture',
               '--out', str(out), '--epochs', '3', '--limit', '10', '--save-model', str(tmp_path/'model.pt'), '--quiet'])
    assert rc == 0
    m = json.loads((out/'metrics.json').read_text())
    assert m['backbone'] == 'posture' and m['feature_dim'] == len(POSTURE_COLUMNS) and m['n_sequences'] == 10
    assert {'logreg', 'paper', 'trees'} <= set(m['baselines'])
    video = fetch_file('bsoid-clips', 'group5_example_2.avi'); n = probe(video).frame_count
    rc = main(['predict', str(tmp_path/'model.pt'), str(video), '--out', str(tmp_path/'eth.csv'),
               '--features-dir', str(tmp_path/'pred')])
    assert rc == 0
    e = pd.read_csv(tmp_path/'eth.csv')
    assert e.frame.tolist() == list(range(n)) and set(e.label) <= set(m['classes'])
    assert load_features(features_path(tmp_path/'pred', video, keyed=True)).backbone == 'posture'
