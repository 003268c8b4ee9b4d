"""Label tables and BORIS exports: the field cases, more members of each family, and a fuzz test of the readers."""
import math
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from mousebehav.sequences import (LabelError, LabelWarning, FeatureArray, LABEL_ROW_COLUMNS, build_sequences,
                                  check_labels, frame_counts, read_boris, read_label_file, read_labels, stores_for,
                                  video_rates)
from mousebehav.video import probe


@pytest.fixture(scope='module')
def base(field_cases):
    "The frame count and frame rate of the field cases' video, measured from the file (90 frames at 30 fps)."
    info = probe(field_cases/'base.mp4')
    return {'base.mp4': info.frame_count}, {'base.mp4': info.fps}


def bouts(t):
    return [(r.video, r.start_frame, r.end_frame, r.behavior) for r in t.itertuples()]


def messages(w, cat=LabelWarning):
    return [str(x.message) for x in w if issubclass(x.category, cat)]


def read_warned(*a, f=read_label_file, **kw):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        return f(*a, **kw), messages(w)


# ---------------------------------------------------------------------------------------------------------------
# the field cases

def test_base_video_is_what_the_field_cases_assume(base):
    counts, rates = base
    assert counts == {'base.mp4': 90} and abs(rates['base.mp4'] - 30) < 0.01


def test_two_subjects_are_refused_until_one_is_chosen(field_cases, base):
    f = field_cases/'boris_two_subjects_point_event.csv'
    for reader in (read_boris, read_label_file):
        with pytest.raises(LabelError, match=r"boris_two_subjects_point_event.csv has 2 subjects \(mouse1, mouse2\): "
                                             r"choose one with --subject"):
            reader(f)
    t, w = read_warned(f, *base, subject='mouse1')
    assert bouts(t) == [('base.mp4', 0, 30, 'locomote'), ('base.mp4', 30, 60, 'face_groom'), ('base.mp4', 60, 90, 'rearing')]
    assert t.row.tolist() == [2, 4, 5]                    # the export's rows; row 3 is the point event
    assert any('1 point event(s) ignored (sniff ×1)' in m for m in w), w
    t2 = read_label_file(f, *base, subject='mouse2')
    assert bouts(t2) == [('base.mp4', 0, 90, 'pause')] and t2.row.tolist() == [6]
    with pytest.raises(LabelError, match=r"no subject 'mouse3' \(its subjects: mouse1, mouse2\)"):
        read_label_file(f, subject='mouse3')


def test_windows_paths_give_the_file_name(field_cases, base):
    t = read_boris(field_cases/'boris_windows_paths.csv', videos=base[0])
    assert bouts(t) == [('base.mp4', 0, 30, 'locomote'), ('base.mp4', 60, 90, 'rearing')]
    assert t.row.tolist() == [2, 3]


def test_boris8_tabular_is_read_as_bouts(field_cases, base):
    f = field_cases/'boris8_tabular.csv'
    t, w = read_warned(f, *base)
    assert t.attrs['layout'] == 'BORIS tabular events'
    assert bouts(t) == [('base.mp4', 0, 30, 'locomote'), ('base.mp4', 30, 60, 'face_groom'), ('base.mp4', 60, 90, 'rearing')]
    assert t.row.tolist() == [2, 5, 7]                    # each bout's START row
    assert any('1 point event(s) ignored (sniff ×1)' in m for m in w), w
    raw = pd.read_csv(f)                                  # BORIS's own frame numbers agree with ours
    assert t.start_frame.tolist() == raw[raw['Behavior type'] == 'START']['Image index'].tolist()
    assert t.end_frame.tolist() == raw[raw['Behavior type'] == 'STOP']['Image index'].tolist()


def test_unpaired_start_names_its_row(field_cases):
    with pytest.raises(LabelError, match=r"boris_tabular_unpaired.csv row 6: START of 'rearing' never stopped"):
        read_label_file(field_cases/'boris_tabular_unpaired.csv')


def test_times_converted_with_the_videos_own_rate(field_cases, base):
    f = field_cases/'boris_fps25_video30.csv'
    t, w = read_warned(f, *base)
    assert bouts(t) == [('base.mp4', 0, 30, 'locomote'), ('base.mp4', 30, 60, 'face_groom'), ('base.mp4', 60, 90, 'rearing')]
    assert any('boris_fps25_video30.csv' in m and 'says 25 fps for base.mp4' in m and 'video is 30 fps' in m for m in w), w
    t2, w2 = read_warned(f, f=read_boris)                 # no video rate known: the export's own
    assert t2.end_frame.tolist() == [25, 50, 75] and not w2


def test_rates_and_counts_from_feature_stores(field_cases, base):
    "The command line's path: frame counts and rates from the stores' attributes, then the export."
    counts, rates = base
    store = FeatureArray(np.zeros((90, 2), np.float32), np.arange(90), rates['base.mp4'],
                         attrs=dict(video=str(field_cases/'base.mp4'), crop='', video_fps=rates['base.mp4'], video_frame_count=90))
    stores = stores_for([store])
    assert frame_counts(stores) == counts and video_rates(stores) == rates
    t = read_label_file(field_cases/'boris_fps25_video30.csv', frame_counts(stores), video_rates(stores))
    assert t.end_frame.tolist() == [30, 60, 90]
    other = FeatureArray(np.zeros((9, 2), np.float32), np.arange(9), 25.0,
                         attrs=dict(video='/y/base.mp4', crop='0,0,5,5', video_fps=25.0, video_frame_count=90))
    with pytest.raises(LabelError, match='base.mp4 at 25 fps, but another store says 30'):
        video_rates(stores_for([store, other]))


# ---------------------------------------------------------------------------------------------------------------
# one checker: past the end is an error everywhere; rows of other classes are skipped and named

@pytest.fixture
def table(tmp_path):
    t = pd.DataFrame(dict(video=['base.mp4'] * 4, start_frame=[0, 30, 60, 80], end_frame=[30, 60, 90, 95],
                          behavior=['locomote', 'itch', 'inactive', 'rearing'], fold=[0, 1, 2, 0]))
    p = tmp_path/'labels.csv'; t.to_csv(p, index=False)
    return p


def test_rows_past_the_end_are_an_error_whatever_the_classes(table, base):
    counts, _ = base
    msg = "labels.csv row 5: frames past the end: end_frame 95 > 90 frames in base.mp4"
    with pytest.raises(LabelError, match=msg): read_label_file(table, counts)
    t = read_label_file(table)                            # without frame counts nothing can be checked
    for classes in (None, 'seed', ['crawling', 'grooming', 'rearing'], {'locomote': 'walk'}):
        with pytest.raises(LabelError, match=msg): check_labels(t, counts, classes)
        with pytest.raises(LabelError, match=msg): check_labels(t, counts, classes, unknown_videos='skip')


def test_rows_of_unknown_classes_are_skipped_and_named(table):
    t = read_label_file(table)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        chk = check_labels(t, classes=['crawling', 'grooming', 'rearing'])
    assert chk.rows.row.tolist() == [2, 5]
    assert chk.skipped.values.tolist() == [
        [3, 'base.mp4', 'itch', "'itch' (class 'scratching') is not among the classes crawling, grooming, rearing"],
        [4, 'base.mp4', 'inactive', "'inactive' has no 'seed' class"]]
    assert messages(w) == [chk.report()] and chk.report().startswith('2 row(s) of ') and 'labels.csv row 3 (base.mp4, itch)' in chk.report()
    coarse = check_labels(t, classes=['walk', 'rest'])     # a coarse model's classes: the scheme is told from them
    assert coarse.rows.behavior.tolist() == ['locomote', 'inactive'] and coarse.skipped.row.tolist() == [3, 5]
    fine = check_labels(t, classes=['itch'])               # behaviour names: the fine scheme
    assert fine.rows.behavior.tolist() == ['itch']
    assert not len(check_labels(t).skipped) and len(check_labels(t, classes='fine').rows) == 4


def test_videos_without_a_store_skipped_only_when_asked(table):
    t = read_label_file(table)
    with pytest.raises(LabelError, match="unknown video 'base.mp4'"): check_labels(t, {'other.mp4': 90})
    with pytest.warns(LabelWarning, match="video 'base.mp4' is not among the 1 video"):
        chk = check_labels(t, {'other.mp4': 90}, unknown_videos='skip')
    assert len(chk.rows) == 0 and chk.skipped.row.tolist() == [2, 3, 4, 5]


def test_build_sequences_names_the_rows_it_leaves_out(table):
    t = read_labels(table, behaviors=False)
    feats = {('base.mp4', None): FeatureArray(np.arange(100, dtype=np.float32)[:, None], np.arange(100), 30.0)}
    with pytest.warns(LabelWarning, match=r"labels.csv row 3 \(base.mp4, itch\): 'itch' \(class 'scratching'\)"):
        ss = build_sequences(t, feats, 'seed', classes=['crawling', 'rearing'])
    assert [s.label for s in ss] == ['crawling', 'rearing'] and ss.skipped.row.tolist() == [3, 4]
    assert ss.sequences[1].x[[0, -1], 0].tolist() == [80, 94]


# ---------------------------------------------------------------------------------------------------------------
# more members of the families

AGG = ("Observation id,Observation date,Observation type,Source,Time offset (s),Media duration (s),FPS,Subject,Behavior,"
       "Behavioral category,Modifier #1,Behavior type,Start (s),Stop (s),Duration (s),Media file name\n")

def agg_row(media='base.mp4', subject='mouse1', beh='locomote', kind='STATE', start=0.0, stop=1.0, fps='30.000',
            source=None, dur='3.000', obs='obs1', offset='0.0'):
    return (f'{obs},2024-05-01,Media file(s),"{source or "player #1:" + media}",{offset},{dur},{fps},{subject},{beh},,,'
            f'{kind},{start},{stop},{stop - start:.3f},"{media}"\n')


def write(tmp_path, name, text):
    p = tmp_path/name; p.write_text(text); return p


def test_more_subject_layouts(tmp_path):
    three = write(tmp_path, 'three.tsv', (AGG + agg_row(subject='m1') + agg_row(subject='m2') + agg_row(subject='m3'))
                  .replace(',', '\t'))
    with pytest.raises(LabelError, match=r'three.tsv has 3 subjects \(m1, m2, m3\)'): read_label_file(three)
    unnamed = write(tmp_path, 'unnamed.csv', AGG + agg_row(subject='') + agg_row(subject='m1', start=1, stop=2))
    with pytest.raises(LabelError, match=r'has 2 subjects \(No focal subject, m1\)'): read_label_file(unnamed)
    assert bouts(read_label_file(unnamed, subject='No focal subject')) == [('base.mp4', 0, 30, 'locomote')]
    tab = write(tmp_path, 'tab.csv', 'Subject,Behavior,Behavior type,Time,Media file name,FPS\n'
                'a,groom,START,0,x.mp4,30\nb,groom,START,0.5,x.mp4,30\na,groom,STOP,1,x.mp4,30\nb,groom,STOP,2,x.mp4,30\n')
    with pytest.raises(LabelError, match=r'has 2 subjects \(a, b\)'): read_label_file(tab)
    assert bouts(read_label_file(tab, subject='b')) == [('x.mp4', 15, 60, 'groom')]


def test_point_events_never_become_bouts(tmp_path):
    "Aggregated without a 'Behavior type' column: a zero-length event is a point event."
    p = write(tmp_path, 'points.csv', 'Behavior,Start (s),Stop (s),Media file,FPS\nsniff,1.5,1.5,a.mp4,30\nlocomote,0,1,a.mp4,30\n')
    t, w = read_warned(p)
    assert bouts(t) == [('a.mp4', 0, 30, 'locomote')] and any('1 point event(s) ignored (sniff ×1)' in m for m in w)
    only = write(tmp_path, 'only_points.csv', AGG + agg_row(kind='POINT', start=1, stop=1))
    with pytest.raises(LabelError, match=r'no state events \(bouts\); 1 point event\(s\) ignored'): read_label_file(only)


@pytest.mark.parametrize('media', [r'C:\Users\lab\Videos\base.mp4', '/home/lab/videos/base.mp4', r'..\base.mp4',
                                   'file:///C:/Users/lab/base.mp4', r'\\server\share\mice\base.mp4', 'base.mp4'])
def test_media_names_from_any_path_style(tmp_path, media, base):
    p = write(tmp_path, 'paths.csv', AGG + agg_row(media=media, start=1, stop=2))
    assert bouts(read_label_file(p, *base)) == [('base.mp4', 30, 60, 'locomote')]
    src_only = write(tmp_path, 'source_only.csv', 'Source,FPS,Behavior,Behavior type,Start (s),Stop (s)\n'
                     f'"player #1:{media}",30,locomote,STATE,1,2\n')
    assert bouts(read_label_file(src_only, *base)) == [('base.mp4', 30, 60, 'locomote')]


def test_our_table_with_paths_and_excel_habits(tmp_path):
    p = tmp_path/'excel.csv'
    text = ('video;start_frame;end_frame;behavior;fold\r\nC:\\vidéos\\base.mp4;0;30;locomote;0\r\n\r\n'
            '/v/base.mp4;30;60;face_groom;1\r\nbase.mp4;60;50;rearing;1\r\n')
    p.write_bytes(text.encode('cp1252'))                  # a Windows encoding, semicolons, CRLF
    with pytest.raises(LabelError, match=r'excel.csv row 5: end_frame 50 <= start_frame 60'): read_label_file(p)  # a blank row 3
    p.write_bytes(text.replace('60;50', '60;90').encode('utf-8-sig'))   # UTF-8 with the byte-order mark Excel writes
    t = read_label_file(p, {'base.mp4': 90})
    assert bouts(t) == [('base.mp4', 0, 30, 'locomote'), ('base.mp4', 30, 60, 'face_groom'), ('base.mp4', 60, 90, 'rearing')]
    assert t.row.tolist() == [2, 4, 5]
    tsv = write(tmp_path, 'tab.tsv', 'video\tstart_frame\tend_frame\tbehavior\tfold\nbase.mp4\t0\t30\tlocomote\t0\n')
    assert len(read_label_file(tsv)) == 1
    with pytest.warns(LabelWarning, match='not a BORIS export'): read_label_file(tsv, subject='mouse1')


def test_queued_media_files_and_time_offset(tmp_path):
    src = 'player #1:D:\\rec\\part1.mp4;D:\\rec\\part2.mp4'
    p = write(tmp_path, 'queue.csv', AGG + agg_row(media='D:\\rec\\part1.mp4', source=src, dur='60.000;60.000', fps='30.000;25.000', start=1, stop=2)
              + agg_row(media='D:\\rec\\part2.mp4', source=src, dur='60.000;60.000', fps='30.000;25.000', start=70, stop=72))
    assert bouts(read_label_file(p)) == [('part1.mp4', 30, 60, 'locomote'), ('part2.mp4', 250, 300, 'locomote')]
    nodur = write(tmp_path, 'nodur.csv', AGG + agg_row(media='part2.mp4', source='player #1:part1.mp4;part2.mp4', dur='NA', start=70, stop=72))
    with pytest.raises(LabelError, match='nodur.csv row 2: part2.mp4 is media file 2 of player #1'): read_label_file(nodur)
    old = write(tmp_path, 'old.csv', 'Media file,Media duration (s),FPS,Behavior,Behavior type,Start (s),Stop (s)\n'
                '"a.mp4;b.mp4","10;10","30;30",groom,STATE,12,13\n')
    assert bouts(read_label_file(old)) == [('b.mp4', 60, 90, 'groom')]
    off = write(tmp_path, 'offset.csv', AGG + agg_row(offset='100.0', start=101, stop=102))
    assert bouts(read_label_file(off)) == [('base.mp4', 30, 60, 'locomote')]


def test_other_rate_disagreements(tmp_path):
    ntsc = write(tmp_path, 'ntsc.csv', AGG + agg_row(fps='29.970', start=600, stop=601))
    t, w = read_warned(ntsc, video_fps={'base.mp4': 30.0})
    assert bouts(t) == [('base.mp4', 18000, 18030, 'locomote')] and any('says 29.97 fps' in m for m in w), w
    t, w = read_warned(ntsc, video_fps={'base.mp4': 29.97002997})
    assert t.start_frame.tolist() == [17982] and not w     # BORIS's 3 decimals of the same rate: no warning
    nofps = write(tmp_path, 'nofps.csv', 'Behavior,Behavior type,Time,Media file name,Status\ngroom,STATE,1,a.mp4,START\n'
                  'groom,STATE,2,a.mp4,STOP\n')
    with pytest.raises(LabelError, match='nofps.csv row 2: no frame rate'): read_label_file(nofps)
    assert bouts(read_label_file(nofps, video_fps={'a.mp4': 60})) == [('a.mp4', 60, 120, 'groom')]


def test_unpaired_family(tmp_path):
    hdr = 'Observation id,Subject,Behavior,Modifier #1,Behavior type,Time,Media file name,FPS\n'
    stray = write(tmp_path, 'stray.csv', hdr + 'o,m,groom,,STOP,1,a.mp4,30\n')
    with pytest.raises(LabelError, match="stray.csv row 2: STOP of 'groom' without a START"): read_label_file(stray)
    twice = write(tmp_path, 'twice.csv', hdr + 'o,m,groom,,START,1,a.mp4,30\no,m,groom,,START,2,a.mp4,30\no,m,groom,,STOP,3,a.mp4,30\n')
    with pytest.raises(LabelError, match="twice.csv row 3: START of 'groom' while the one in row 2 is not stopped"):
        read_label_file(twice)
    mods = write(tmp_path, 'mods.csv', hdr + 'o,m,groom,face,START,1,a.mp4,30\no,m,groom,body,START,2,a.mp4,30\n'
                 'o,m,groom,face,STOP,3,a.mp4,30\no,m,groom,body,STOP,4,a.mp4,30\n')
    assert read_label_file(mods)[['start_frame', 'end_frame', 'row']].values.tolist() == [[30, 90, 2], [60, 120, 3]]
    never = write(tmp_path, 'never.csv', AGG + agg_row(start=1, stop=2).replace(',2,1.000,', ',NA,NA,'))
    with pytest.raises(LabelError, match='never.csv row 2: Stop \\(s\\) is empty: the state was never stopped'):
        read_label_file(never)


def test_old_boris_preamble_and_refusals(tmp_path):
    pre = write(tmp_path, 'preamble.tsv', 'Observation id\tobs1\n\nMedia file(s)\n\nPlayer #1\t/data/a.mp4\n\n'
                'Time\tMedia file path\tTotal length\tFPS\tSubject\tBehavior\tComment\tStatus\n'
                '1.5\t/data/a.mp4\t60\t30\t\tgroom\t\tSTART\n3.0\t/data/a.mp4\t60\t30\t\tgroom\t\tSTOP\n')
    t = read_label_file(pre)
    assert bouts(t) == [('a.mp4', 45, 90, 'groom')] and t.row.tolist() == [8]
    live = write(tmp_path, 'live.csv', 'Behavior,Behavior type,Start (s),Stop (s),Media file name,FPS\ngroom,STATE,1,2,NA,30\n')
    with pytest.raises(LabelError, match='live.csv row 2: no media file'): read_label_file(live)
    notes = write(tmp_path, 'notes.csv', 'date,weight\n2024-05-01,25\n')
    with pytest.raises(LabelError, match='neither a label table'): read_label_file(notes)
    with pytest.raises(LabelError, match='no such file'): read_label_file(tmp_path/'missing.csv')
    (tmp_path/'bin.csv').write_bytes(bytes(range(256)))
    with pytest.raises(LabelError, match='binary'): read_label_file(tmp_path/'bin.csv')


# ---------------------------------------------------------------------------------------------------------------
# fuzz: the readers return a checked table or raise LabelError, nothing else

CELLS = st.one_of(st.integers(-5, 200), st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(
    ['', 'NA', 'nan', ' ', 'x', '1e400', '-0', '3.0', '2.5', '1_0', 'base.mp4', r'C:\v\base.mp4', '/v/', 'a.mp4;b.mp4',
     'player #1:a.mp4;b.mp4|player #2:c.mp4', 'START', 'STOP', 'POINT', 'STATE', 'start', '30;25', '30.000', '0:00:01.5',
     'mouse1', 'mouse2', 'No focal subject', 'locomote', 'itch', 'Not found', '"', '"a,b"', 'é', '\u2028', '0,0,10,10']),
    st.text(max_size=6))
VIDEOS = st.one_of(st.none(), st.just({'base.mp4': 90, 'a.mp4': 30}))
RATES = st.one_of(st.none(), st.just({'base.mp4': 30.0}), st.just({'a.mp4': 25.0, 'b.mp4': 0}))
SEPS = st.sampled_from([',', '\t', ';'])
OURS = {'video': st.sampled_from(['base.mp4', 'a.mp4', r'C:\v\a.mp4', '/v/base.mp4', 'b.mp4']),
        'behavior': st.sampled_from(['locomote', 'itch', 'groom']), 'fold': st.integers(0, 3), 'row': st.integers(1, 9)}
BORIS = {'Observation id': st.sampled_from(['obs1', 'obs2']), 'Subject': st.sampled_from(['mouse1', '', 'mouse2']),
         'FPS': st.sampled_from(['30', '25.000', '30;25', 'NA']),
         'Media file name': st.sampled_from(['base.mp4', r'C:\v\base.mp4', 'a.mp4;b.mp4', '/x/a.mp4']),
         'Media file': st.sampled_from(['a.mp4', 'a.mp4;b.mp4']),
         'Source': st.sampled_from(['player #1:base.mp4', 'player #1:a.mp4;b.mp4|player #2:c.mp4']),
         'Media duration (s)': st.sampled_from(['3', '1;2', 'NA']), 'Time offset (s)': st.sampled_from(['0', '0.5']),
         'Modifier #1': st.sampled_from(['', 'x']), 'Image index': st.integers(0, 90)}


def table_text(columns, rows, sep):
    def fmt(v):
        s = str(v)
        return '"' + s.replace('"', '""') + '"' if any(c in s for c in (sep, '"', '\n', '\r')) else s
    return '\n'.join(sep.join(fmt(v) for v in r) for r in [columns] + rows) + '\n'


def add_noise(draw, cols, rows):
    "Break a plausible table a little: replace cells by odd ones, drop or repeat a row, add a stray cell."
    for _ in range(draw(st.integers(0, 3))):
        if rows: rows[draw(st.integers(0, len(rows) - 1))][draw(st.integers(0, len(cols) - 1))] = draw(CELLS)
    if rows and draw(st.integers(0, 3)) == 0:
        i = draw(st.integers(0, len(rows) - 1))
        rows.insert(i, list(rows[i])) if draw(st.booleans()) else rows.pop(i)
    if rows and draw(st.integers(0, 5)) == 0: rows[-1].append(draw(CELLS))
    return rows


@st.composite
def our_tables(draw):
    cols = list(draw(st.permutations(['video', 'start_frame', 'end_frame', 'behavior', 'fold'])))
    crop = draw(st.sampled_from([[], ['crop_x0', 'crop_y0', 'crop_x1', 'crop_y1'], ['crop']]))
    extra = draw(st.lists(st.sampled_from(['row', 'notes']), unique=True, max_size=2))
    cols = [c for c in cols if draw(st.integers(0, 15))] + crop + extra          # now and then a column missing
    rows = []
    for _ in range(draw(st.integers(0, 6))):
        s = draw(st.integers(0, 80)); box = draw(st.sampled_from([None, (0, 0, 10, 10), (5, 0, 30, 20)]))
        r = dict(start_frame=s, end_frame=s + draw(st.integers(1, 40)), notes=draw(st.text(max_size=5)),
                 crop='' if box is None else ','.join(map(str, box)), **{c: draw(OURS[c]) for c in ['video', 'behavior', 'fold', 'row']},
                 **{c: '' if box is None else box[i] for i, c in enumerate(['crop_x0', 'crop_y0', 'crop_x1', 'crop_y1'])})
        rows.append([r[c] for c in cols])
    if draw(st.booleans()): rows = add_noise(draw, cols, rows)
    return table_text(cols, rows, draw(SEPS))


@st.composite
def boris_tables(draw):
    layout = draw(st.sampled_from(['aggregated', 'tabular', 'tabular-old']))
    status = {'aggregated': 'Behavior type', 'tabular': 'Behavior type', 'tabular-old': 'Status'}[layout]
    times = ['Start (s)', 'Stop (s)'] if layout == 'aggregated' else ['Time']
    media = draw(st.sampled_from(['Media file name', 'Media file', 'Source']))
    extra = draw(st.lists(st.sampled_from([c for c in BORIS if c != media]), unique=True, max_size=4))
    cols = list(draw(st.permutations(['Behavior', status, *times, media, *[c for c in ['FPS'] if draw(st.integers(0, 5))]] + extra)))
    const = {c: draw(BORIS[c]) for c in cols if c in BORIS}
    rows = []
    for _ in range(draw(st.integers(0, 4))):
        beh = draw(st.sampled_from(['locomote', 'groom'])); t0 = draw(st.integers(0, 2000)) / 1000
        t1 = t0 + draw(st.integers(40, 1500)) / 1000; point = draw(st.integers(0, 5)) == 0
        r = dict(const, Behavior=beh)
        if layout == 'aggregated':
            rows.append(dict(r, **{status: 'POINT' if point else 'STATE', 'Start (s)': t0, 'Stop (s)': t0 if point else t1}))
        elif point: rows.append(dict(r, **{status: 'POINT', 'Time': t0}))
        else: rows += [dict(r, **{status: 'START', 'Time': t0}), dict(r, **{status: 'STOP', 'Time': t1})]
    rows = [[r[c] for c in cols] for r in rows]
    if draw(st.booleans()): rows = add_noise(draw, cols, rows)
    return table_text(cols, rows, draw(SEPS))


def assert_checked(t, videos):
    assert list(t.columns) == LABEL_ROW_COLUMNS and len(t)
    assert (t.start_frame >= 0).all() and (t.end_frame > t.start_frame).all()
    assert all(c is None or isinstance(c, str) for c in t.crop)
    if videos: assert all(v in videos and e <= videos[v] for v, e in zip(t.video, t.end_frame))
    again = check_labels(t, videos).rows
    assert again.values.tolist() == t.values.tolist()


def read_or_label_error(path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', LabelWarning)
        try: return read_label_file(path, **kw)
        except LabelError: return None


FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

@FUZZ
@given(our_tables(), VIDEOS, st.sampled_from(['utf-8', 'utf-16', 'cp1252']))
def test_fuzz_our_reader(text, videos, enc):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d)/'labels.csv'
        try: p.write_bytes(text.encode(enc))
        except UnicodeEncodeError: p.write_bytes(text.encode('utf-8'))
        t = read_or_label_error(p, videos=videos, behaviors=False)
    if t is not None: assert_checked(t, videos)


@FUZZ
@given(boris_tables(), VIDEOS, RATES,
       st.sampled_from([None, 'mouse1', 'No focal subject']))
def test_fuzz_boris_reader(text, videos, rates, subject):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d)/'boris.csv'; p.write_text(text, encoding='utf-8')
        t = read_or_label_error(p, videos=videos, video_fps=rates, subject=subject)
    if t is not None: assert_checked(t, videos)


@FUZZ
@given(st.binary(max_size=300))
def test_fuzz_bytes(data):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d)/'any.csv'; p.write_bytes(data)
        t = read_or_label_error(p)
    if t is not None: assert_checked(t, None)


@FUZZ
@given(st.lists(st.fixed_dictionaries({c: CELLS for c in ['video', 'start_frame', 'end_frame', 'behavior', 'fold']}), max_size=6),
       VIDEOS, st.sampled_from([None, 'seed', 'fine', ['crawling', 'rearing'], {'locomote': 'walk'}]))
def test_fuzz_checker_on_frames(rows, videos, classes):
    df = pd.DataFrame(rows, columns=['video', 'start_frame', 'end_frame', 'behavior', 'fold'], dtype=object)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', LabelWarning)
        try: chk = check_labels(df, videos, classes)
        except LabelError: return
    assert len(chk.rows) + len(chk.skipped) == len(df)
    if len(chk.rows): assert_checked(chk.rows, videos)


def test_boris_times_on_a_variable_frame_rate_video(field_cases, tmp_path):
    "Frames 0–44 at 30 fps, 45–89 at 10 fps: BORIS seconds land on the frames shown at those times, not at the mean rate."
    import av
    from fractions import Fraction
    from mousebehav.video import file_fingerprint, iter_frames
    pts = np.r_[np.arange(45) * 100 / 3, 1500 + np.arange(45) * 100].round().astype(int)  # ms
    v = tmp_path/'vfr.mp4'
    with av.open(str(v), 'w') as o:
        s = o.add_stream('libx264', rate=30); s.height, s.width = 240, 320; s.pix_fmt = 'yuv420p'
        s.time_base = s.codec_context.time_base = Fraction(1, 1000)
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            frames = [f for _, f in iter_frames(field_cases/'base.mp4')]
        for k, a in enumerate(frames):
            f = av.VideoFrame.from_ndarray(np.ascontiguousarray(a), format='bgr24'); f.pts, f.time_base = int(pts[k]), Fraction(1, 1000)
            for p in s.encode(f): o.mux(p)
        for p in s.encode(): o.mux(p)
    store = FeatureArray(np.zeros((90, 2), np.float32), np.arange(90), 15.08,
                         attrs=dict(video=str(v), crop='', video_fps=15.08, video_frame_count=90,
                                    video_fingerprint=file_fingerprint(v)))
    stores = stores_for([store])
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        rates = video_rates(stores)
    np.testing.assert_allclose(rates['vfr.mp4'], pts / 1000, atol=1e-6)   # the frame times, not one rate
    export = pd.DataFrame({'Observation id': 'o', 'Media file name': 'vfr.mp4', 'FPS': 15.08, 'Subject': 'm',
                           'Behavior': ['locomote', 'face_groom', 'rearing'], 'Behavior type': 'STATE',
                           'Start (s)': [0.0, 2.0, 4.0], 'Stop (s)': [1.0, 3.0, 6.0]})
    export.to_csv(tmp_path/'vfr_boris.csv', index=False)
    t = read_label_file(tmp_path/'vfr_boris.csv', frame_counts(stores), rates)
    assert list(zip(t.start_frame, t.end_frame)) == [(0, 30), (50, 60), (70, 90)]
    # the same store without its video (moved away): the mean rate, as before
    moved = FeatureArray(store.features, store.frame_index, 15.08, attrs=dict(store.attrs, video=str(tmp_path/'gone'/'vfr.mp4')))
    assert video_rates(stores_for([moved])) == {'vfr.mp4': 15.08}
