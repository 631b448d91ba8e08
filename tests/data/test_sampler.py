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
