"""The model that ships with mousebehav: in the package (and its wheel) with its model card, and `mousebehav predict VIDEO`
labels a real video with it, no model argument and no training."""
import json, subprocess, sys, zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mousebehav.cli import main
from mousebehav.data import fetch
from mousebehav.frame_model import (DEFAULT_MODEL_NAME, card_path, default_model_path, load_default_model,
                                    predict_frames_proba)
from mousebehav.features import load_features
from mousebehav.video import probe

ROOT = Path(__file__).resolve().parent.parent


def test_shipped_model_and_card_agree():
    p = default_model_path()
    assert p.name == DEFAULT_MODEL_NAME and p.exists() and p.stat().st_size < 20e6
    fm, card = load_default_model(), json.loads(card_path(p).read_text())
    assert fm.kind == 'frames' and fm.backbone == 'posture' and fm.scheme == 'coarse'
    assert fm.classes == card['classes'] == ['groom', 'other', 'rear', 'rest', 'scratch', 'walk']
    assert fm.fps == pytest.approx(card['fps']) and fm.columns == card['columns']
    assert sum(card['training_bouts'].values()) == 33 + 80          # every labelled panel and clip
    for ds in ('bsoid-panels', 'bsoid-clips'):
        cv = card['cross_validated'][ds]
        assert cv['seeds'] == 5 and 0 <= cv['accuracy_sd'] < 0.2
        assert cv['accuracy'] > cv['majority_rate']                 # the recipe does better than naming the commonest class
    assert set(card['data_licences'].values()) == {'GPL-3.0'}


def test_predict_without_a_model(tmp_path, capsys):
    video = fetch('bsoid-clips')/'group14_example_3.avi'; n = probe(video).frame_count
    out, fdir = tmp_path/'eth.csv', tmp_path/'f'
    assert main(['predict', str(video), '--out', str(out), '--features-dir', str(fdir)]) == 0
    cap = capsys.readouterr()
    assert 'the one that ships with mousebehav' in cap.out and 'unsure' not in cap.err   # a clip like those it learnt from
    e = pd.read_csv(out)
    assert list(e.columns) == ['frame', 'time_s', 'label'] + [f'p_{c}' for c in load_default_model().classes]
    assert e.frame.tolist() == list(range(n)) and np.allclose(e.filter(like='p_').sum(axis=1), 1, atol=1e-4)
    st = load_features(next(fdir.rglob('*.h5')))                   # the shipped model's own output on the video's store
    assert np.allclose(e.filter(like='p_').values, predict_frames_proba(load_default_model(), st.features), atol=1e-5)
    assert (tmp_path/'eth_bouts.csv').exists()
    assert main(['predict', str(video), str(video), str(video), '--out', str(out)]) == 2   # three paths: an error


def test_wheel_holds_the_model(tmp_path):
    r = subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-q', '-w', str(tmp_path), str(ROOT)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    names = zipfile.ZipFile(next(tmp_path.glob('mousebehav-*.whl'))).namelist()
    assert f'mousebehav/tables/models/{DEFAULT_MODEL_NAME}' in names
    assert f'mousebehav/tables/models/{card_path(DEFAULT_MODEL_NAME).name}' in names


def test_predict_warns_when_the_model_is_unsure(tmp_path, capsys):
    "The DLC open field is filmed from above, unlike the B-SOiD videos the shipped model learnt from: it says so."
    video = fetch('dlc-openfield')/'m3v1mp4.mp4'
    assert main(['predict', str(video), '--out', str(tmp_path/'e.csv'), '--features-dir', str(tmp_path/'f')]) == 0
    err = capsys.readouterr().err
    assert 'mousebehav: warning:' in err and 'unsure of most frames' in err and 'm3v1mp4.mp4' in err, err
    e = pd.read_csv(tmp_path/'e.csv')
    assert e.filter(like='p_').max(axis=1).median() < 0.4                  # … and it is
