"""The training data of a LoRA run: example lengths and the length cap, response-only encoding (an example longer
than the cap is dropped and counted, never cut), the response collator, the seeded length-grouped batch order that
one process and N data-parallel processes share (:class:`SeededLengthSampler`), and the loss that keeps their
steps equal."""

from __future__ import annotations

import math
from collections.abc import Sequence

# Rendering "with no budget": larger than any example, so nothing is cut before the length check.
NO_BUDGET = 1 << 30


def full_lengths(tokenizer, examples: Sequence) -> list[int]:
    """Token count of every example rendered whole (prompt + response + eos, as training renders it).

    Args:
        tokenizer: the model's tokenizer.
        examples: objects with ``id``, ``task``, ``prompt`` and ``response``.

    Returns:
        One length per example, in order.
    """
    from igds.modeling.encoding import encode_examples

    return [len(it.input_ids) for it in encode_examples(tokenizer, examples, NO_BUDGET)]


def data_max_length(tokenizer, examples: Sequence, quantile: float = 0.99, cap: int = 512, floor: int = 64,
                    multiple: int = 8) -> int:
    """A ``max_length`` fitted to a pool: the ``quantile`` of its full rendered lengths, rounded up.

    With the 0.99 quantile about 1% of the pool is longer and would be dropped by training.

    Args:
        tokenizer: the model's tokenizer.
        examples: the pool (or the selection) to fit.
        quantile: share of examples that must fit, in (0, 1].
        cap: the largest length returned.
        floor: the smallest length returned.
        multiple: round up to a multiple of this.

    Returns:
        ``clamp(ceil_to_multiple(quantile of the lengths), floor, cap)``; ``floor`` for no examples.
    """
    return quantile_length(full_lengths(tokenizer, examples), quantile, cap, floor, multiple)


def quantile_length(lengths: Sequence[int], quantile: float = 0.99, cap: int = 512, floor: int = 64,
                    multiple: int = 8) -> int:
    """:func:`data_max_length` from already measured full lengths (same arguments and result)."""
    if not 0 < quantile <= 1 or multiple < 1 or floor > cap:
        raise ValueError("need 0 < quantile <= 1, multiple >= 1 and floor <= cap")
    lengths = sorted(lengths)
    if not lengths:
        return floor
    # the smallest length that at least `quantile` of the examples fit in (the "inverted CDF" quantile)
    q = lengths[max(math.ceil(quantile * len(lengths)) - 1, 0)]
    rounded = -(-q // multiple) * multiple
    return max(floor, min(cap, rounded))


def encode_for_training(tokenizer, examples: Sequence, max_length: int) -> tuple[list[dict], int]:
    """Tokenise examples into ``{"input_ids", "labels"}`` with the loss on the response only.

    Each record is rendered through its task (instruction, optional system prompt, chat template;
    ``general`` records without instruction), exactly as extraction renders it, but whole: an example
    whose full length (prompt + response + eos) exceeds ``max_length`` is dropped and counted, never
    cut, so no kept example loses a prompt token or its answer's end. An example without any response
    token (possible only for a tokenizer without eos and an empty response) carries no loss and is
    skipped without being counted.

    Args:
        tokenizer: the model's tokenizer.
        examples: objects with ``id``, ``task``, ``prompt`` and ``response``.
        max_length: token budget per example.

    Returns:
        ``(rows, n_dropped)``: one dict per kept example (labels are -100 on prompt positions) and the
        number of examples dropped for being longer than ``max_length``.
    """
    from igds.modeling.encoding import encode_examples

    rows, dropped = [], 0
    for it in encode_examples(tokenizer, examples, NO_BUDGET):
        if len(it.input_ids) > max_length:
            dropped += 1
            continue
        if len(it.input_ids) <= it.prompt_len:
            continue
        labels = [-100] * it.prompt_len + list(it.input_ids[it.prompt_len:])
        rows.append({"input_ids": list(it.input_ids), "labels": labels})
    return rows, dropped


def dropped_note(n_dropped: int | None, n_selected: int | None, max_length: int | None,
                 warn_share: float = 0.01) -> tuple[str, bool]:
    """The line a finished run shows about its length filter, and whether it deserves a warning.

    Args:
        n_dropped: examples left out for being too long (None: a run recorded before they were counted).
        n_selected: examples the run was given.
        max_length: the run's token budget.
        warn_share: warn when more than this share of the selection was dropped.

    Returns:
        ``(text, warn)``, e.g. ``("dropped 3 of 120 examples longer than 256 tokens", True)``.
    """
    if n_dropped is None or n_selected is None:
        return "dropped examples not recorded (a run from before they were counted)", False
    text = f"dropped {n_dropped} of {n_selected} examples longer than {max_length} tokens"
    return text, n_selected > 0 and n_dropped > warn_share * n_selected


class ResponseCollator:
    """Right-pads a batch; padding gets label -100 and attention 0.

    Args:
        pad_id: the tokenizer's pad token id.
    """

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, rows: list[dict]) -> dict:
        """Stack rows into ``input_ids``, ``attention_mask``, ``labels`` tensors ``[batch, pos]``."""
        import torch

        width = max(len(r["input_ids"]) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(rows), width), -100, dtype=torch.long)
        attn = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            n = len(r["input_ids"])
            ids[i, :n] = torch.tensor(r["input_ids"])
            labels[i, :n] = torch.tensor(r["labels"])
            attn[i, :n] = 1
        return {"input_ids": ids, "attention_mask": attn, "labels": labels}


class SeededLengthSampler:
    """The example order of one epoch: length-grouped batches drawn from ``(seed, epoch)`` alone.

    How N data-parallel workers see exactly the single-process batches, in the same order:

    1. *Order.* Every process builds this sampler over the same rows and draws the permutation of epoch
       ``e`` from a private generator seeded with ``(seed, e)`` (the trainer sets the epoch before each
       epoch, also when it resumes mid-epoch). Nothing else touches that generator, so LoRA dropout,
       the number of workers, the rank and a resume cannot change the order: every rank, and the
       single-process run, iterate the identical index sequence.
    2. *Batches.* The dataloader cuts that sequence into global batches of ``batch_size`` (the
       config's ``batch_size``, the same as one process uses). With ``split_batches`` accelerate then
       gives rank ``k`` the slice ``[k*b, (k+1)*b)`` of every global batch (``b = batch_size / N``), so the
       union of the N micro-batches of a step is exactly the single-process batch of that step.
    3. *The last, short batch of an epoch* (``r = n mod batch_size`` rows) would leave the higher ranks
       with no rows, and a rank without a batch hangs DDP's collectives. It is padded with ``null_index``,
       a row whose labels are all -100: it adds no token to the loss or its normaliser (the loss is
       summed over response tokens and divided by their count over all ranks), hence no gradient.
    4. *Gradients.* Each rank's loss is its token sum divided by the global token count times N, and
       DDP averages the N gradients: the result is the gradient of the single-process batch mean.

    Args:
        lengths: token count of every real row (the rows the single-process run trains on).
        group_size: examples per length group (one optimizer step: ``batch_size * grad_accum``), as the
            Hugging Face ``LengthGroupedSampler`` groups them.
        seed: the data seed.
        batch_size: the global dataloader batch (only used to pad the last batch when ``world > 1``).
        world: number of data-parallel processes.
        null_index: index of the all-ignored padding row (needed when ``world > 1``).
    """

    def __init__(self, lengths: Sequence[int], group_size: int, seed: int, batch_size: int = 1, world: int = 1,
                 null_index: int | None = None):
        if world > 1 and null_index is None:
            raise ValueError("a data-parallel sampler needs the index of a padding row")
        self.lengths = list(lengths)
        self.group_size = group_size
        self.seed = seed
        self.batch_size = batch_size
        self.world = world
        self.null_index = null_index
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose order :meth:`__iter__` yields."""
        self.epoch = int(epoch)

    def _padding(self) -> int:
        r = len(self.lengths) % self.batch_size
        if self.world <= 1 or r == 0:
            return 0
        # the last rank's slice starts at (world - 1) * share: give it at least one row
        return max((self.batch_size // self.world) * (self.world - 1) + 1 - r, 0)

    def __len__(self) -> int:
        return len(self.lengths) + self._padding()

    def order(self) -> list[int]:
        """The real rows' indices for the current epoch (no padding)."""
        import torch
        from transformers.trainer_pt_utils import get_length_grouped_indices

        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return list(get_length_grouped_indices(self.lengths, self.group_size, generator=generator))

    def __iter__(self):
        return iter(self.order() + [self.null_index] * self._padding())


def seeded_trainer_class():
    """A ``Trainer`` whose training sampler is the one it is given (a :class:`SeededLengthSampler`)."""
    from transformers import Trainer

    class _SeededTrainer(Trainer):
        igds_sampler: SeededLengthSampler | None = None

        def _get_train_sampler(self, train_dataset=None):
            return self.igds_sampler

        def _run_epoch(self, *args, **kwargs):
            # set the epoch here, not through the dataloader's set_epoch: on a resume in the middle of a later
            # epoch accelerate wraps the sharded batch sampler in a skipping one and set_epoch no longer reaches
            # the sampler, which would replay epoch 0's order
            self.igds_sampler.set_epoch(kwargs["epoch"])
            return super()._run_epoch(*args, **kwargs)

    return _SeededTrainer


def causal_lm_loss(outputs, labels, num_items_in_batch=None):
    """Summed next-token cross-entropy over labelled positions divided by ``num_items_in_batch``.

    The Trainer counts ``num_items_in_batch`` over the whole step (over all ranks when distributed), so a
    rank whose slice holds only padding rows contributes zero, not NaN, and the ranks' losses add up to
    the single-process mean.
    """
    from transformers.loss.loss_utils import ForCausalLMLoss

    logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
    return ForCausalLMLoss(logits, labels, logits.shape[-1], num_items_in_batch=num_items_in_batch)


def world_size() -> int:
    """Processes in the initialised ``torch.distributed`` group (1 when there is none)."""
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
