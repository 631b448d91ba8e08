from trainer.data.sampler import epoch_order, next_batch, total_steps


def test_epoch_order_is_a_seeded_permutation() -> None:
    a = epoch_order(10, seed=3, epoch=0)
    assert sorted(a) == list(range(10))
    assert a == epoch_order(10, seed=3, epoch=0)
    assert a != epoch_order(10, seed=3, epoch=1)
    assert a != epoch_order(10, seed=4, epoch=0)


def test_next_batch_walks_the_epoch_and_never_straddles_it() -> None:
    order0, order1 = epoch_order(5, 0, 0), epoch_order(5, 0, 1)
    idx, epoch, pos = next_batch(5, 2, seed=0, epoch=0, position=0)
    assert (idx, epoch, pos) == (order0[0:2], 0, 2)
    idx, epoch, pos = next_batch(5, 2, seed=0, epoch=epoch, position=pos)
    assert (idx, epoch, pos) == (order0[2:4], 0, 4)
    # Only one record is left in epoch 0: the next batch starts epoch 1 (drop_last).
    idx, epoch, pos = next_batch(5, 2, seed=0, epoch=epoch, position=pos)
    assert (idx, epoch, pos) == (order1[0:2], 1, 2)


def test_total_steps() -> None:
    assert total_steps(100, 8, num_train_epochs=1.0, max_steps=-1) == 12
    assert total_steps(100, 8, num_train_epochs=2.5, max_steps=-1) == 30
    assert total_steps(100, 8, num_train_epochs=1.0, max_steps=7) == 7


def test_a_dataset_smaller_than_a_batch_fills_it_from_the_next_epochs() -> None:
    # 3 records, 5 a batch: the rest of epoch 0 is all of it, then 2 of epoch 1; the next batch goes
    # on from epoch 1's third record (a user's 8 records at per_device_train_batch_size 16 failed).
    o0, o1, o2, o3 = (epoch_order(3, 0, e) for e in range(4))
    idx, epoch, pos = next_batch(3, 5, seed=0, epoch=0, position=0)
    assert (idx, epoch, pos) == (o0 + o1[0:2], 1, 2)
    idx, epoch, pos = next_batch(3, 5, seed=0, epoch=epoch, position=pos)
    assert (idx, epoch, pos) == (o1[2:3] + o2 + o3[0:1], 3, 1)
    # Over 3 batches (15 draws = 5 epochs) every record is drawn 5 times.
    draws, state = [], (0, 0)
    for _ in range(3):
        batch, *state = next_batch(3, 5, 0, *state)
        draws += batch
    assert sorted(draws) == [0] * 5 + [1] * 5 + [2] * 5


def test_total_steps_of_a_dataset_smaller_than_a_batch() -> None:
    # 8 records at 16 a step: half a step per epoch, whole steps only, at least one.
    assert total_steps(8, 16, num_train_epochs=3.0, max_steps=-1) == 1
    assert total_steps(8, 16, num_train_epochs=4.0, max_steps=-1) == 2
    assert total_steps(8, 16, num_train_epochs=1.0, max_steps=-1) == 1
    assert total_steps(8, 16, num_train_epochs=1.0, max_steps=5) == 5
