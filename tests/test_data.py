"""Offline data: whitening, contrast normalisation, image files, IDX files, splits."""
import gzip
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from spikevae import data as D
from spikevae.errors import DataError


def test_whitening_multiplies_the_spectrum_by_R():
    rng = np.random.default_rng(0)
    img = rng.normal(size=(64, 48))
    out = D.whiten(img, f0=0.3, n=4)
    fy = np.fft.fftfreq(64)[:, None]
    fx = np.fft.fftfreq(48)[None, :]
    f = np.hypot(fx, fy)
    R = f * np.exp(-((f / 0.3) ** 4))
    np.testing.assert_allclose(np.fft.fft2(out), np.fft.fft2(img - img.mean()) * R, atol=1e-9)


def test_local_contrast_normalisation_against_direct_convolution():
    from scipy.signal import convolve2d

    rng = np.random.default_rng(1)
    img = rng.normal(size=(40, 40)) * np.linspace(0.2, 3, 40)[None, :]
    out = D.local_contrast_normalise(img, sigma=3.0, size=13)
    ax = np.arange(13) - 6
    k = np.exp(-(ax[:, None] ** 2 + ax[None, :] ** 2) / (2 * 9.0))
    k /= k.sum()
    pad = lambda a: np.pad(a, 6, mode="symmetric")  # noqa: E731  (scipy.ndimage 'reflect')
    sub = img - convolve2d(pad(img), k, mode="valid")
    sd = np.sqrt(convolve2d(pad(sub**2), k, mode="valid"))
    np.testing.assert_allclose(out, sub / np.maximum(sd, sd.mean()), atol=1e-10)


def test_preprocess_gives_zero_mean_unit_variance_and_crops():
    img = np.random.default_rng(2).uniform(0, 255, (60, 70))
    out = D.preprocess_image(img, D.Preprocessing(patch_size=8, crop=4, downsample=1, whiten_f0=0.3))
    assert out.shape == (52, 62) and out.dtype == np.float32
    full = D.local_contrast_normalise(D.whiten(img, 0.3, 4), 3.0, 13)
    expect = ((full - full.mean()) / full.std())[4:-4, 4:-4]
    np.testing.assert_allclose(out, expect, atol=1e-5)


def test_patch_too_large_for_image_is_a_clear_error():
    with pytest.raises(D.DataError, match="smaller than a 16-pixel patch"):
        D.preprocess_image(np.zeros((20, 20)), D.Preprocessing(patch_size=16))


def _write_images(folder):
    import tifffile
    from PIL import Image

    rng = np.random.default_rng(3)
    arrs = {}
    a = rng.integers(0, 255, (40, 48), dtype=np.uint8)
    Image.fromarray(a).save(folder / "a.png")
    arrs["a.png"] = a
    b = rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)
    Image.fromarray(b).save(folder / "b.jpg", quality=95)
    arrs["b.jpg"] = b
    c = rng.integers(0, 4000, (44, 40)).astype(np.uint16)
    tifffile.imwrite(folder / "c.tif", c)
    arrs["c.tif"] = c
    d = rng.integers(0, 4000, (36, 36)).astype(">u2")
    d.tofile(folder / "d.iml")
    arrs["d.iml"] = d
    return arrs


def test_image_readers_each_kind(tmp_path):
    arrs = _write_images(tmp_path)
    np.testing.assert_array_equal(D.read_image(tmp_path / "a.png"), arrs["a.png"])
    np.testing.assert_array_equal(D.read_image(tmp_path / "c.tif"), arrs["c.tif"])
    np.testing.assert_array_equal(D.read_image(tmp_path / "d.iml"), arrs["d.iml"].astype(float))
    from skimage.color import rgb2gray

    jpg = D.read_image(tmp_path / "b.jpg")
    assert jpg.shape == (40, 40)
    assert np.abs(jpg - rgb2gray(arrs["b.jpg"])).mean() < 0.05  # lossy JPEG, grey in [0, 1]


def test_iml_standard_shape(tmp_path):
    raw = np.arange(1024 * 1536, dtype=np.uint32).astype(">u2")
    raw.tofile(tmp_path / "imk00001.iml")
    img = D.read_image(tmp_path / "imk00001.iml")
    assert img.shape == (1024, 1536) and img[1, 0] == 1536


def test_folder_split_is_by_image(tmp_path):
    _write_images(tmp_path)
    prep = D.Preprocessing(patch_size=8, crop=2, downsample=1)  # small files
    ps = D.folder_patches(tmp_path, 300, 100, prep, seed=0, val_fraction=0.25)  # val = d.iml (last by name)
    val_img = D.preprocess_image(D.read_image(tmp_path / "d.iml"), prep)
    win = np.lib.stride_tricks.sliding_window_view(val_img, (8, 8)).reshape(-1, 64)
    for p in ps.val[:20]:
        assert np.any(np.all(win == p.reshape(-1), axis=1))
    train_windows = np.concatenate([
        np.lib.stride_tricks.sliding_window_view(D.preprocess_image(D.read_image(tmp_path / n), prep), (8, 8)).reshape(-1, 64)
        for n in ("a.png", "b.jpg", "c.tif")])
    for p in ps.val[:20]:
        assert not np.any(np.all(np.isclose(train_windows, p.reshape(-1)), axis=1))
    assert ps.train.shape == (300, 8, 8) and ps.val.shape == (100, 8, 8)


def test_natural_split_names_disjoint():
    assert not set(D.NATURAL_TRAIN) & set(D.NATURAL_VAL)


@pytest.mark.parametrize("bad", ["missing", "empty", "corrupt"])
def test_bad_image_folder_is_a_clear_error(tmp_path, bad):
    folder = tmp_path / "imgs"
    if bad != "missing":
        folder.mkdir()
    if bad == "corrupt":
        (folder / "x.png").write_bytes(b"not a png")
    with pytest.raises(D.DataError):
        D.read_image_folder(folder)


def _write_idx(path, arr, code):
    import struct

    head = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(head + arr.tobytes())


def test_mnist_idx_files(tmp_path):
    rng = np.random.default_rng(4)
    xtr = rng.integers(0, 256, (12, 28, 28), dtype=np.uint8)
    ytr = rng.integers(0, 10, 12, dtype=np.uint8)
    xva = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    yva = rng.integers(0, 10, 5, dtype=np.uint8)
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", xtr, 0x08)
    _write_idx(tmp_path / "train-labels-idx1-ubyte", ytr, 0x08)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", xva, 0x08)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", yva, 0x08)
    ps = D.mnist(tmp_path)
    np.testing.assert_allclose(ps.train, xtr / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(ps.val_labels, yva)
    assert ps.preprocessing.patch_size == 28


def test_idx_bad_magic_and_truncation(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04rest")
    with pytest.raises(D.DataError, match="magic"):
        D.read_idx(tmp_path / "bad")
    _write_idx(tmp_path / "trunc", np.zeros((4, 3, 3), np.uint8), 0x08)
    (tmp_path / "trunc").write_bytes((tmp_path / "trunc").read_bytes()[:-5])
    with pytest.raises(D.DataError, match="truncated"):
        D.read_idx(tmp_path / "trunc")


def test_digits():
    ps = D.digits(seed=0)
    assert ps.train.shape[1:] == (8, 8) and 0 <= ps.train.min() and ps.train.max() <= 1
    assert len(ps.train) + len(ps.val) == 1797


def test_unknown_dataset():
    with pytest.raises(D.DataError, match="unknown dataset 'cifar'"):
        D.load_dataset("cifar")


def test_downsample_block_averages_before_filtering():
    img = np.random.default_rng(4).uniform(0, 255, (203, 250))
    prep = D.Preprocessing(patch_size=8, crop=2, downsample=4)
    small = img[:200, :248].reshape(50, 4, 62, 4).mean(axis=(1, 3))
    full = D.local_contrast_normalise(D.whiten(small, prep.whiten_f0, prep.whiten_n), prep.lcn_sigma, prep.lcn_size)
    expect = ((full - full.mean()) / full.std())[2:-2, 2:-2]
    np.testing.assert_allclose(D.preprocess_image(img, prep), expect, atol=1e-5)


@pytest.mark.slow
def test_patch_statistics_against_closed_forms():
    rng = np.random.default_rng(5)
    n, p = 40_000, 8
    white = D.patch_statistics(rng.normal(size=(n, p, p)))
    # white noise: sample-covariance eigenvalues spread (Marchenko-Pastur), PR = D / (1 + D/n) to O(1/n)
    assert white["participation_ratio"] == pytest.approx(p * p / (1 + p * p / n), rel=0.01)
    assert white["pcs_for_90"] in range(55, 60) and white["near_blank_fraction"] == 0.0
    np.testing.assert_allclose(white["spectrum"], 1.0, atol=0.03)  # flat
    # planted: 15 equal directions carry all the variance → PR 15, 14 PCs for 90 % (13.5 rounded up)
    basis = np.linalg.qr(rng.normal(size=(p * p, 15)))[0]
    planted = (rng.normal(size=(n, 15)) @ basis.T).reshape(n, p, p)
    s = D.patch_statistics(planted)
    assert s["participation_ratio"] == pytest.approx(15, rel=0.02) and s["pcs_for_90"] == 14
    # near-blank: a known share of patches scaled to energy < 10
    mixed = rng.normal(size=(1000, p, p))
    mixed[:130] *= 0.1  # energy ≈ 0.64
    assert D.patch_statistics(mixed)["near_blank_fraction"] == pytest.approx(0.13)
    # an 8-pixel block grid (JPEG) adds power on the axes at 1/8 c/px
    grid = rng.normal(size=(5000, 16, 16)) + 2.0 * (np.arange(16) % 8 == 0)[None, None, :]
    assert D.patch_statistics(grid)["axis_excess"]["0.125"] > 3
    assert D.patch_statistics(rng.normal(size=(5000, 16, 16)))["axis_excess"]["0.125"] == pytest.approx(1, abs=0.1)


@pytest.mark.slow
def test_default_natural_patches_are_rich():
    """The held-out photographs' patches are rich: participation ratio >= 120, near-blank <= 5 %."""
    s = D.patch_statistics(D.natural_patches(1, 10_000, seed=0).val)
    assert s["participation_ratio"] >= 120 and s["near_blank_fraction"] <= 0.05, s
    assert max(s["axis_excess"].values()) < 1.3  # no JPEG block peaks


def test_sklearn_sample_photographs_read_without_sklearn_equal_its_loader():
    from sklearn.datasets import load_sample_images

    from spikevae.data.images import _sample_photograph

    sk = load_sample_images()
    for f, im in zip(sk.filenames, sk.images):
        np.testing.assert_array_equal(_sample_photograph(Path(f).stem), im)


def test_skimage_sample_photographs_read_directly_equal_skimage_data():
    import skimage.data

    from spikevae.data.images import _SKIMAGE_FILES, _sample_photograph

    for name in _SKIMAGE_FILES:
        ref = skimage.data.stereo_motorcycle()[0] if name == "stereo_motorcycle" else getattr(skimage.data, name)()
        np.testing.assert_array_equal(_sample_photograph(name), ref, err_msg=name)


def test_validation_patches_alone_equal_natural_patches_and_shapes_come_from_headers():
    """``natural_val_patches`` (what ``simulate`` draws) reads only the held-out photographs' pixels and the
    training photographs' headers, and gives ``natural_patches(...).val`` bit for bit."""
    imgs = D.natural_images()
    assert D.natural_image_shapes() == {k: v.shape for k, v in imgs.items()}
    prep = D.Preprocessing()
    np.testing.assert_array_equal(D.natural_val_patches(300, prep, seed=3), D.natural_patches(1, 300, prep, seed=3).val)


def test_a_crop_or_downsampling_the_photographs_cannot_hold_is_one_clear_error():
    """Preprocessing that leaves no room for a patch in the shipped photographs: the patch sets refuse it in one
    line (no negative sizes reach numpy)."""
    with pytest.raises(D.DataError, match="smaller than a 8-pixel patch plus a 200-pixel border"):
        D.natural_val_patches(5, D.Preprocessing(patch_size=8, crop=200))
    with pytest.raises(D.DataError, match="at 64x downsampling"):
        D.natural_patches(5, 5, D.Preprocessing(patch_size=16, downsample=64))


def test_training_patches_below_the_energy_floor_are_redrawn():
    """With min_energy (the default 10) no patch of the training or validation set falls below it, the positions
    are uniform among those above it (each valid position's share against the exact count, chi-square), the
    near-blank share of the training photographs' patches goes from ~13 % to 0 while their participation ratio
    stays above 120; a stored record without the field reads as 0 (the patches it was trained on)."""
    from spikevae.data import Preprocessing, extract_patches, natural_patches, patch_energy, patch_statistics

    assert Preprocessing().min_energy == 10.0
    assert Preprocessing.from_dict({k: v for k, v in Preprocessing().to_dict().items() if k != "min_energy"}).min_energy == 0
    d = natural_patches(4000, 1000, Preprocessing(), seed=0)
    for x in (d.train, d.val):
        assert (np.square(x.astype(np.float64)).sum((1, 2)) >= 10.0).all()
    st = patch_statistics(natural_patches(8000, 10, Preprocessing(), seed=0).train)
    blank = patch_statistics(natural_patches(8000, 10, Preprocessing(min_energy=0.0), seed=0).train)
    assert st["near_blank_fraction"] == 0 and blank["near_blank_fraction"] > 0.1 and st["participation_ratio"] > 120
    rng = np.random.default_rng(3)
    img = rng.normal(size=(12, 12)).astype(np.float32)
    img[:, :6] *= 0.05  # a dim half: its patches fall below the floor
    e = patch_energy(img, 4)
    direct = np.array([[np.square(img[i:i + 4, j:j + 4].astype(np.float64)).sum() for j in range(9)] for i in range(9)])
    np.testing.assert_allclose(e, direct, rtol=1e-10)
    ok = e >= 4.0
    p = extract_patches(img, 4, 40_000, rng, min_energy=4.0)
    energies = np.square(p.astype(np.float64)).sum((1, 2))
    assert (energies >= 4.0).all()
    keys = {round(v, 6): 0 for v in e[ok]}
    for v in energies:
        keys[round(v, 6)] += 1
    obs = np.array(list(keys.values()))
    mult = np.array([np.isclose(e[ok], k, atol=1e-6).sum() for k in keys])  # positions sharing an energy
    chi2 = ((obs - 40_000 * mult / ok.sum()) ** 2 / (40_000 * mult / ok.sum())).sum()
    assert stats.chi2.sf(chi2, len(obs) - 1) > 1e-3
    with pytest.raises(DataError, match="min_energy"):
        extract_patches(np.zeros((8, 8), np.float32), 4, 3, rng, min_energy=1.0)
