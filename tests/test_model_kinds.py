"""Both model kinds through every command: a frame model (the default of `train`) and an LSTM, told apart by their file
(`evaluate.load_any_model`); train → predict CSV → evaluate on posture stores of real B-SOiD clips."""
import json, zipfile

import numpy as np
import pandas as pd
import pytest

from mousebehav.cli import main
from mousebehav.data import fetch
from mousebehav.evaluate import load_any_model, is_frame_model
from mousebehav.video import probe

CLIPS = [f'group{g}_example_{e}.avi' for g in (2, 3, 6, 7, 11, 14) for e in (1, 2)]  # grooming, rearing, crawling


@pytest.fixture(scope='module')
def clips(tmp_path_factory):
    "Posture stores (5 fps) of 12 B-SOiD clips and their label rows."
    d = tmp_path_factory.mktemp('kinds')
    folder = fetch('bsoid-clips')
    assert main(['extract', *[str(folder/c) for c in CLIPS], '--backbone', 'posture', '--out', str(d/'stores'), '--quiet']) == 0
    lab = pd.read_csv(folder/'labels.csv'); lab = lab[lab.video.isin(CLIPS)]
    lab.to_csv(d/'labels.csv', index=False)
    return d, folder, sorted(map(str, (d/'stores').glob('*.h5')))


def train(d, stores, out, *extra) -> int:
    return main(['train', *stores, '--labels', str(d/'labels.csv'), '--classes', 'coarse', '--out', str(out), '--quiet',
                 '--threads', '1', *extra])


def test_frame_model_train_predict_evaluate(clips, tmp_path, capsys):
    d, folder, stores = clips
    assert train(d, stores, tmp_path/'fm.skops') == 0                       # no --model: the frame model
    assert 'frame model written' in capsys.readouterr().out
    fm = load_any_model(tmp_path/'fm.skops')
    assert is_frame_model(fm) and fm.backbone == 'posture' and fm.fps == pytest.approx(5.0)
    assert fm.classes == ['groom', 'rear', 'walk'] and fm.scheme == 'coarse'
    video = folder/'group6_example_1.avi'; n = probe(video).frame_count
    assert main(['predict', str(tmp_path/'fm.skops'), str(video), '--out', str(tmp_path/'eth.csv'),
                 '--features-dir', str(tmp_path/'f')]) == 0
    e = pd.read_csv(tmp_path/'eth.csv')
    assert list(e.columns) == ['frame', 'time_s', 'label', 'p_groom', 'p_rear', 'p_walk']
    assert e.frame.tolist() == list(range(n)) and np.allclose(e.filter(like='p_').sum(axis=1), 1, atol=1e-4)
    b = pd.read_csv(tmp_path/'eth_bouts.csv'); assert b.end_frame.iloc[-1] == n
    # the ethogram is the frame model's own per-frame output on the video's store
    from mousebehav.frame_model import predict_frames_proba
    from mousebehav.features import load_features
    st = load_features(next((tmp_path/'f').glob('*.h5')))
    assert np.allclose(e.filter(like='p_').values, predict_frames_proba(fm, st.features), atol=1e-5)
    assert main(['evaluate', str(tmp_path/'fm.skops'), *stores, '--labels', str(d/'labels.csv'), '--out', str(tmp_path/'ev')]) == 0
    m = json.loads((tmp_path/'ev'/'metrics.json').read_text())
    assert m['n_sequences'] == len(CLIPS) and m['skipped_rows'] == 0
    assert m['accuracy'] >= 0.9              # scored on its own training clips: a model that learnt them


def test_lstm_kind_still_trains_and_predicts(clips, tmp_path):
    d, folder, stores = clips
    assert train(d, stores, tmp_path/'m.pt', '--model', 'lstm', '--epochs', '2', '--test-fraction', '0') == 0
    tm = load_any_model(tmp_path/'m.pt')
    assert not is_frame_model(tm) and tm.classes == ['groom', 'rear', 'walk'] and tm.backbone == 'posture'
    video = folder/'group2_example_1.avi'
    assert main(['predict', str(tmp_path/'m.pt'), str(video), '--out', str(tmp_path/'e.csv'), '--features-dir', str(tmp_path/'f')]) == 0
    assert len(pd.read_csv(tmp_path/'e.csv')) == probe(video).frame_count
    assert train(d, stores, tmp_path/'m2.pt', '--epochs', '1', '--test-fraction', '0') == 0   # an LSTM option: an LSTM
    assert not is_frame_model(load_any_model(tmp_path/'m2.pt'))


def test_frame_model_refuses_lstm_options(clips, tmp_path, capsys):
    d, folder, stores = clips
    assert train(d, stores, tmp_path/'fm.skops', '--model', 'frames', '--epochs', '3') == 2
    assert '--epochs' in capsys.readouterr().err and not list(tmp_path.iterdir())


def not_models(tmp):
    "Files of every kind that are not model files: a table, an empty file, text, a zip, a skops file of something else."
    import skops.io as sio
    (tmp/'labels.csv').write_text('video,start_frame\na.mp4,0\n')
    (tmp/'empty.pt').write_bytes(b'')
    (tmp/'notes.skops').write_text('a model, honestly')
    with zipfile.ZipFile(tmp/'bundle.zip', 'w') as z: z.writestr('schema.txt', 'x')
    sio.dump({'format': 'something-else', 'weights': [1, 2]}, tmp/'other.skops')
    return [tmp/'labels.csv', tmp/'empty.pt', tmp/'notes.skops', tmp/'bundle.zip', tmp/'other.skops']


def test_load_any_model_refuses_files_that_are_not_models(clips, tmp_path, capsys):
    from mousebehav.lstm import ModelFileError
    from mousebehav.frame_model import FrameModelError
    d, folder, stores = clips
    for f in not_models(tmp_path):
        with pytest.raises((ModelFileError, FrameModelError), match='not a mousebehav'): load_any_model(f)
        capsys.readouterr()
        assert main(['predict', str(f), str(folder/'group2_example_1.avi'), '--out', str(tmp_path/'e.csv')]) == 2
        assert f.name in capsys.readouterr().err and not (tmp_path/'e.csv').exists()
    with pytest.raises(ModelFileError, match='no such model file'): load_any_model(tmp_path/'missing.pt')


def test_bench_classify_on_combined_inputs(tmp_path):
    "`--backbone posture+motion`: combined stores of every clip, the frame model as headline, at or above the majority rate."
    from mousebehav.posture import POSTURE_COLUMNS
    out = tmp_path/'run'
    assert main(['bench', 'classify', '--dataset', 'bsoid-clips', '--classes', 'coarse', '--backbone', 'posture+motion',
                 '--limit', '10', '--seeds', '1', '--epochs', '1', '--out', str(out), '--save-model', str(tmp_path/'m.skops'),
                 '--quiet']) == 0
    m = json.loads((out/'metrics.json').read_text())
    assert m['backbone'] == 'posture+motion' and m['feature_dim'] > len(POSTURE_COLUMNS) and m['n_sequences'] == 10
    assert m['model'] == 'frames' and m['accuracy'] >= m['majority_rate'] == 0.5
    fm = load_any_model(tmp_path/'m.skops')
    assert fm.backbone == 'posture+motion' and fm.feature_dim == m['feature_dim']
