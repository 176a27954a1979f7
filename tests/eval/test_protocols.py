"""Named depth protocols: crop boxes in pixels, registry, validation."""

import dataclasses

import numpy as np
import pytest

from sa4depth.errors import InputError
from sa4depth.eval.protocols import (
    CITYSCAPES,
    KITTI_EIGEN,
    KITTI_IMPROVED,
    KITTI_IMPROVED_MD2,
    NYU,
    PROTOCOLS,
    SYNTHETIC,
    DepthProtocol,
    crop_box,
    crop_mask,
    get_protocol,
)


def test_garg_crop_matches_monodepth2_truncation():
    # Monodepth2: (np.array([0.40810811 * h, 0.99189189 * h, 0.03594771 * w, 0.96405229 * w])).astype(int32);
    # for the 375 x 1242 KITTI maps that is 153.04 -> 153, 371.96 -> 371, 44.65 -> 44, 1197.35 -> 1197.
    assert crop_box("garg", 375, 1242) == (153, 371, 44, 1197)
    # Another KITTI camera size (370 x 1226): 151.0000007, 366.9999993, 44.07, 1181.93: truncated.
    assert crop_box("garg", 370, 1226) == (151, 366, 44, 1181)


def test_nyu_crop_is_the_standard_border_box():
    assert crop_box("nyu", 480, 640) == (45, 471, 41, 601)


def test_cityscapes_crop_is_manydepths_centre_crop():
    # ManyDepth: gt[:768] then gt[256:, 192:1856] on the 1024 x 2048 frame.
    assert crop_box("cityscapes", 1024, 2048) == (256, 768, 192, 1856)
    assert CITYSCAPES.gt_rows == (0.0, 0.75)


def test_crop_mask_selects_exactly_the_box():
    mask = crop_mask("garg", 375, 1242)
    rows, cols = np.nonzero(mask)
    assert (rows.min(), rows.max() + 1, cols.min(), cols.max() + 1) == (153, 371, 44, 1197)
    assert mask.sum() == (371 - 153) * (1197 - 44)
    assert crop_mask(None, 3, 4).all()


def test_named_protocols_have_the_published_settings():
    assert (KITTI_EIGEN.min_depth, KITTI_EIGEN.max_depth, KITTI_EIGEN.crop) == (1e-3, 80.0, "garg")
    assert KITTI_IMPROVED.crop == "garg" and KITTI_IMPROVED.median_scaling
    assert KITTI_IMPROVED_MD2.crop is None and not KITTI_IMPROVED_MD2.gt_range_mask
    assert (NYU.max_depth, NYU.crop) == (10.0, "nyu")
    assert (CITYSCAPES.max_depth, CITYSCAPES.crop) == (80.0, "cityscapes")
    assert (SYNTHETIC.min_depth, SYNTHETIC.max_depth, SYNTHETIC.crop) == (0.1, 80.0, None)
    # Monodepth2 and ManyDepth resize the disparity; SC-Depth (our NYU reference) resizes depth, and
    # masks and clamps at 0.1 m.
    for protocol in (KITTI_EIGEN, KITTI_IMPROVED, KITTI_IMPROVED_MD2, CITYSCAPES, SYNTHETIC):
        assert protocol.resized_quantity == "disparity", protocol.name
    assert (NYU.resized_quantity, NYU.min_depth) == ("depth", 0.1)
    for name, protocol in PROTOCOLS.items():
        assert get_protocol(name) is protocol


def test_unknown_protocol_is_an_input_error():
    with pytest.raises(InputError, match="kitti_eigen"):
        get_protocol("kitti")


def test_protocol_is_frozen_and_validated():
    with pytest.raises(dataclasses.FrozenInstanceError):
        KITTI_EIGEN.max_depth = 100.0
    with pytest.raises(ValueError, match="crop"):
        DepthProtocol("x", 0.1, 10.0, crop="middle")
    with pytest.raises(ValueError, match="min_depth"):
        DepthProtocol("x", 10.0, 1.0)
    with pytest.raises(ValueError, match="resized_quantity"):
        DepthProtocol("x", 0.1, 10.0, resized_quantity="log_depth")
    with pytest.raises(ValueError, match="gt_rows"):
        DepthProtocol("x", 0.1, 10.0, gt_rows=(0.5, 0.5))
