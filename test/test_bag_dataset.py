"""BagDataset: the shared sample layout, K scaled to the training size, flips, split rule, DataLoader workers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_bag_io import INFO_TOPIC, JPEG_BAG, JPEG_TOPIC, KITTI_CX, KITTI_CY, KITTI_FX, RAW_BAG, RAW_TOPIC, kitti_frame
from torch.utils.data import DataLoader

from mgdepth_core.data import DataConfig, build_dataset
from mgdepth_core.data.bag import BagDataset
from mgdepth_core.data.transforms import resize_rgb, to_tensor_image

H, W = 32, 96


def config_for(shared_data, bag=RAW_BAG, topic=RAW_TOPIC, **changes) -> DataConfig:
    values = dict(dataset="bag", path=str(shared_data / bag), image_topic=topic, camera_info_topic=INFO_TOPIC,
                  height=H, width=W, frame_ids=[0, -1, 1], augment=False)
    values.update(changes)
    return DataConfig(**values)


def test_sample_layout_frames_and_scaled_intrinsics(shared_data):
    dataset = build_dataset(config_for(shared_data), "train", training=False)
    assert isinstance(dataset, BagDataset)
    sample = dataset[4]  # target frame 5 (train samples 0..8 are frames 1..9)
    assert set(sample) == {"color", "color_aug", "K", "index"} and sample["index"] == 4
    assert set(sample["color"]) == {0, -1, 1}
    for frame_id, kitti_number in ((0, 5), (-1, 4), (1, 6)):
        image = sample["color"][frame_id]
        assert image.shape == (3, H, W) and image.dtype == torch.float32
        expected = to_tensor_image(resize_rgb(kitti_frame(shared_data, kitti_number), H, W))
        torch.testing.assert_close(image, expected, rtol=0, atol=0)
        torch.testing.assert_close(sample["color_aug"][frame_id], image)
    K = sample["K"]
    assert K.dtype == torch.float32 and K.shape == (3, 3)
    torch.testing.assert_close(K, torch.tensor([[KITTI_FX * W / 1242, 0, KITTI_CX * W / 1242],
                                                [0, KITTI_FX * H / 375, KITTI_CY * H / 375], [0, 0, 1]]))


def test_flip_and_jitter_follow_the_shared_transforms(shared_data):
    plain = build_dataset(config_for(shared_data), "train", training=False)[0]
    torch.manual_seed(0)
    flipped = build_dataset(config_for(shared_data, augment=True, flip_probability=1.0, jitter_probability=1.0),
                            "train", training=True)[0]
    torch.testing.assert_close(flipped["color"][-1], plain["color"][-1].flip(-1))
    assert flipped["K"][0, 2].item() == pytest.approx(W - 1 - plain["K"][0, 2].item())
    assert not torch.equal(flipped["color_aug"][0], flipped["color"][0])  # one jitter draw, on every frame
    no_augmentation_when_not_training = build_dataset(
        config_for(shared_data, augment=True, flip_probability=1.0), "val", training=False)[0]
    assert no_augmentation_when_not_training["K"][0, 2].item() == pytest.approx(plain["K"][0, 2].item())


def test_split_rule_every_tenth_sample_is_validation(shared_data):
    config = config_for(shared_data, bag=JPEG_BAG, topic=JPEG_TOPIC)
    every = build_dataset(config, "test", training=False)
    train = build_dataset(config, "train", training=False)
    val = build_dataset(config, "val", training=False)
    assert (len(every), len(train), len(val)) == (38, 35, 3)
    val_targets = [val.stamp_ns(i) for i in range(len(val))]
    assert val_targets == [every.stamp_ns(i) for i in (9, 19, 29)]
    assert not set(val_targets) & {train.stamp_ns(i) for i in range(len(train))}
    with pytest.raises(ValueError, match="unknown split 'bogus'"):
        build_dataset(config, "bogus")
    with pytest.raises(ValueError, match="max_gap_s=0.05"):
        build_dataset(config_for(shared_data, max_gap_s=0.05), "train")


def test_dataloader_workers_decode_lazily_with_their_own_readers(shared_data):
    dataset = build_dataset(config_for(shared_data), "train", training=False)
    loader = DataLoader(dataset, batch_size=4, num_workers=2, shuffle=False)
    batches = list(loader)
    assert sum(b["index"].numel() for b in batches) == len(dataset) == 17
    assert batches[0]["color"][0].shape == (4, 3, H, W) and batches[0]["K"].shape == (4, 3, 3)
    assert dataset.source._reader is None  # the main process never opened a reader: workers did
    np.testing.assert_array_equal(batches[1]["index"].numpy(), [4, 5, 6, 7])
    torch.testing.assert_close(batches[1]["color"][0][0], dataset[4]["color"][0])
