"""The error map (training/error_map.py): rays are drawn where the recorded error is, and the
record follows the rays' errors."""
import pytest
import torch

from nerf.config import load_config
from nerf.training.batches import sample_batch
from nerf.training.error_map import ErrorMap
from nerf.training.trainer import Trainer


def cell_of(em: ErrorMap, cam, x, y):
    return cam * (em.gh * em.gw) + (y.long() // em.cell) * em.gw + x.long() // em.cell


def test_draws_follow_the_error_and_stay_inside_the_images():
    g = torch.Generator().manual_seed(0)
    em = ErrorMap(2, 10, 13, 4, "cpu")  # 3 x 4 cells, the last row and column cut by the image
    assert (em.gh, em.gw) == (3, 4)
    cam, x, y = em.sample(20000, g)
    assert int(x.min()) == 0 and int(x.max()) == 12 and int(y.min()) == 0 and int(y.max()) == 9
    assert set(cam.tolist()) == {0, 1}
    em.error.fill_(0.01)
    em.error[5] = 0.23  # a quarter of the total: 23 / (23 + 23 * 1)
    cam, x, y = em.sample(20000, g)
    assert float((cell_of(em, cam, x, y) == 5).float().mean()) == pytest.approx(0.5, abs=0.02)


def test_first_visit_sets_the_error_later_ones_average_and_skipped_rays_do_not_count():
    em = ErrorMap(1, 8, 8, 4, "cpu", decay=0.5)
    cam, x, y = torch.zeros(3, dtype=torch.long), torch.tensor([0.5, 1.5, 6.5]), torch.tensor([0.5, 2.5, 0.5])
    em.update(cam, x, y, torch.tensor([0.1, 0.3, -1.0]))
    assert em.error.tolist() == pytest.approx([0.2, 1.0, 1.0, 1.0])  # cell 1 (x 6.5) skipped: still unvisited
    em.update(cam[:1], x[:1], y[:1], torch.tensor([0.6]))
    assert float(em.error[0]) == pytest.approx(0.4)


def test_too_fine_a_map_is_refused_in_one_line():
    from nerf.errors import UserError

    with pytest.raises(UserError, match="train.error_map_cells: 4096 gives 33554432 cells over 2 images"):
        ErrorMap.for_images(torch.zeros(1, 1, 1, 3).expand(2, 4096, 4096, 3), 4096)  # no memory behind it


def test_a_batch_takes_its_share_from_the_map():
    g = torch.Generator().manual_seed(1)
    images = torch.rand(3, 16, 16, 3)
    em = ErrorMap.for_images(images, 4)
    em.error.fill_(0.0)
    em.error[0] = 1.0  # image 0, the top-left 4 x 4 pixels
    cam, x, y, target = sample_batch(images, 1000, g, error_map=em, error_share=0.25)
    first = (cam[:250] == 0) & (x[:250] < 4) & (y[:250] < 4)
    assert bool(first.all()) and float(((cam[250:] == 0) & (x[250:] < 4) & (y[250:] < 4)).float().mean()) < 0.05
    assert torch.equal(target, images[cam, (y - 0.5).long(), (x - 0.5).long()])


def test_training_with_error_sampling_records_the_rays_errors(tmp_path):
    cfg = load_config("builtin", ["data.synthetic.resolution=16", "data.synthetic.n_train=4", "train.max_steps=3",
                                  "train.batch_rays=256", "train.eval_every=0", "train.error_sampling=0.5",
                                  "train.error_map_cells=4"])
    trainer = Trainer(cfg, tmp_path / "run", torch.device("cpu"), show_progress=False, log=lambda *a: None)
    trainer.train()
    em = trainer.error_map
    assert em.error.numel() == 4 * 4 * 4 and bool(em.visited.any())
    seen = em.error[em.visited]
    assert bool((seen >= 0).all()) and bool((seen < 1).all())  # real squared errors replaced the start value
