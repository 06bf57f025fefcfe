"""GRDA in the Hugging Face Trainer, both ways of handing it over (``optimizers=(GRDA(...), scheduler)`` and
``optimizer_cls_and_kwargs``), on a tiny BERT built from a config (no download): saving a checkpoint and resuming
from it (``resume_from_checkpoint``) ends bit-identical to an uninterrupted run on the CPU."""

from __future__ import annotations

import warnings

import pytest
import torch

transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")

import grda  # noqa: E402
from grda import GRDA  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore")]
LR, C, MU = 0.05, 0.05, 0.51
STEPS, SAVE_AT = 8, 4


class TinyDataset(torch.utils.data.Dataset):
    def __init__(self, n: int = 48, length: int = 12, vocab: int = 64) -> None:
        g = torch.Generator().manual_seed(0)
        self.ids = torch.randint(1, vocab, (n, length), generator=g)
        self.labels = (self.ids[:, 0] % 2).long()

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "attention_mask": torch.ones_like(self.ids[i]), "labels": self.labels[i]}


def tiny_bert(seed: int):
    torch.manual_seed(seed)
    config = transformers.BertConfig(
        vocab_size=64,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=16,
        num_labels=2,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    return transformers.BertForSequenceClassification(config)


def arguments(out):
    return transformers.TrainingArguments(
        output_dir=str(out),
        max_steps=STEPS,
        per_device_train_batch_size=8,
        save_strategy="steps",
        save_steps=SAVE_AT,
        logging_strategy="no",
        report_to=[],
        use_cpu=True,
        seed=7,
        data_seed=7,
        dataloader_num_workers=0,
        disable_tqdm=True,
        weight_decay=0.0,
        lr_scheduler_type="constant",
        learning_rate=LR,
    )


def run(route: str, out, seed: int, resume=None):
    model = tiny_bert(seed)
    kwargs = {}
    if route == "optimizers":
        opt = GRDA(model.parameters(), lr=LR, c=C, mu=MU)
        scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)  # lr changes: tau keeps what it had
        kwargs["optimizers"] = (opt, scheduler)
    else:
        kwargs["optimizer_cls_and_kwargs"] = (GRDA, dict(lr=LR, c=C, mu=MU))
    trainer = transformers.Trainer(model=model, args=arguments(out), train_dataset=TinyDataset(), **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.train(resume_from_checkpoint=resume)
    return model, trainer


@pytest.mark.parametrize("route", ["optimizers", "optimizer_cls_and_kwargs"])
def test_trainer_resume_is_bit_identical(route, tmp_path):
    straight, t1 = run(route, tmp_path / "a", seed=0)
    assert isinstance(t1.optimizer.optimizer if hasattr(t1.optimizer, "optimizer") else t1.optimizer, GRDA)
    checkpoint = tmp_path / "a" / f"checkpoint-{SAVE_AT}"
    assert (checkpoint / "optimizer.pt").is_file()
    resumed, t2 = run(route, tmp_path / "b", seed=1, resume=str(checkpoint))  # other initial weights
    assert t2.state.global_step == STEPS
    for (name, p), q in zip(straight.named_parameters(), resumed.parameters()):
        assert torch.equal(p, q), name
    assert grda.sparsity(straight) > 0.01, "the run prunes"
    inner = [t.optimizer.optimizer if hasattr(t.optimizer, "optimizer") else t.optimizer for t in (t1, t2)]
    assert inner[0].thresholds() == inner[1].thresholds()
    if route == "optimizers":
        assert t2.lr_scheduler.get_last_lr() == t1.lr_scheduler.get_last_lr()
