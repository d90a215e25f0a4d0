"""The counting toy (Fig 26): fine-tuning on a context vs distilling it.

Context C = ``"1, 2, ..., 63,"``; probe X = ``" 64, 65, ..., 71"``. A model prompted with C
predicts X well (it continues the count); the same model without C does not. Two ways to put C
into the weights, each for ``steps`` AdamW steps from the same start:

* **fine-tune on C**: LM loss on C's own tokens (`losses.imitation_loss`): P(X) moves towards
  P(C), and the loss on 64..71 stays high (the paper's point);
* **distil C**: the (k+1)-way KL (`losses.distillation_loss`) of the student on X against the
  prompted teacher's top-k on X (`Engine.topk_logprobs`, C encoded once): the student's loss on
  64..71 approaches the prompted model's.

The distillation text is the probe itself (our choice: the paper does not say what the toy
distilled on). What the student matches is the teacher's *distribution* at each probe position,
not the probe's tokens, so its loss converges to the prompted model's loss, not to 0. A second
probe, ``" 72, ..., 79"``, never trained on, shows what carries over beyond the trained positions.

Fig 26 left: the prompted model's loss on each number n of ``"1, 2, ..., 80"`` given 1..n-1
(summed over the number's tokens), against 1/n on log-log axes.

A deliberately small, explicit loop (not `hhhlab.train`): the figure needs the probe loss after
every step, and both arms are a few dozen steps on sequences of ~200 tokens.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import torch

from hhhlab.train import losses


def counting(lo: int, hi: int) -> str:
    return ", ".join(str(i) for i in range(lo, hi + 1))


def _ids(tok, text: str) -> list[int]:
    return tok(text, add_special_tokens=False)["input_ids"]


def probe_loss(model, prefix: list[int], probe: list[int]) -> float:
    """Mean NLL per probe token given ``prefix`` (``[BOS]`` for an unprompted model)."""
    ids = torch.tensor([prefix + probe])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0, len(prefix) - 1 : -1].float(), -1)
    return float(-logp.gather(-1, torch.tensor(probe)[:, None]).mean())


def per_number_loss(model, tok, n_max: int = 80) -> list[float]:
    """Loss of each number n in ``"1, 2, ..., n_max"`` given the numbers before it (Fig 26 left)."""
    bos = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    ids, owner = [bos], [-1]
    for n in range(1, n_max + 1):
        piece = _ids(tok, (", " if n > 1 else "") + str(n))
        ids += piece
        owner += [n] * len(piece)
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0, :-1].float(), -1)
    nll = -logp.gather(-1, torch.tensor(ids[1:])[:, None])[:, 0]
    out = [0.0] * n_max
    for o, v in zip(owner[1:], nll.tolist()):
        out[o - 1] += v
    return out


def counting_toy(model_spec: str = "smollm2-135m", *, steps: int = 30, lr: float = 1e-4, k: int = 50,
                 seed: int = 0, progress: bool = False) -> dict:
    """Both arms of the toy; returns curves and the prompted / plain reference losses.
    ``progress``: a bar per arm (the full default model takes a few seconds a step on a CPU)."""
    from tqdm.auto import trange

    from hhhlab.models.engine import Engine
    from hhhlab.models.load import load_model

    torch.manual_seed(seed)
    lm = load_model(model_spec, dtype="float32", device="cpu")
    tok = lm.tokenizer
    bos = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    context = [bos] + _ids(tok, counting(1, 63) + ",")
    probe = _ids(tok, " " + counting(64, 71))
    probe2 = _ids(tok, " " + counting(72, 79))
    prompted2 = [bos] + _ids(tok, counting(1, 71) + ",")
    base = lm.model.eval()
    ref = {"prompted": probe_loss(base, context, probe), "plain": probe_loss(base, [bos], probe),
           "prompted_72_79": probe_loss(base, prompted2, probe2), "plain_72_79": probe_loss(base, [bos], probe2)}
    ((teacher_lp, teacher_ids),) = Engine(lm, batch_size=1).topk_logprobs(context, [probe], k)  # [T, k]
    teacher_lp, teacher_ids = teacher_lp.clone(), teacher_ids.clone()  # out of inference mode

    def probe_kl(model) -> float:
        """Mean (k+1)-way KL(prompted teacher ‖ model without the context) over the probe positions."""
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([[bos] + probe[:-1]])).logits[0]
            return float(losses.distillation_loss(logits, teacher_lp, teacher_ids))

    def run(arm: str) -> dict:
        model = copy.deepcopy(base).train()
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
        curve, curve2 = [probe_loss(model.eval(), [bos], probe)], [probe_loss(model, [bos], probe2)]
        kls = [probe_kl(model)]
        t0 = time.perf_counter()
        for _ in trange(steps, desc=f"counting toy: {arm}", disable=not progress):
            model.train()
            if arm == "finetune":  # LM loss on the context's own tokens
                ids = torch.tensor([context])
                logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
                loss = losses.imitation_loss(logp.gather(-1, ids[0, 1:, None])[:, 0])
            else:  # KL to the prompted teacher on the probe positions, without the context
                ids = torch.tensor([[bos] + probe[:-1]])
                logits = model(input_ids=ids).logits[0].float()  # [T, V]
                loss = losses.distillation_loss(logits, teacher_lp, teacher_ids)
            opt.zero_grad()
            loss.backward()
            opt.step()
            model.eval()
            curve.append(probe_loss(model, [bos], probe))
            curve2.append(probe_loss(model, [bos], probe2))
            kls.append(probe_kl(model))
        return {"probe_loss": curve, "probe_72_79_loss": curve2, "probe_kl": kls, "seconds": time.perf_counter() - t0}

    return {"model": model_spec, "steps": steps, "lr": lr, "k": k, "reference": ref,
            "finetune": run("finetune"), "distill": run("distill"),
            "per_number_loss": per_number_loss(base, tok), "probe_tokens": len(probe),
            "context_tokens": len(context)}


def plot_toy(result: dict, path: str | Path) -> Path:
    """Fig 26: per-number loss vs 1/n (left); probe loss per step for both arms (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hhhlab.report.footnote import save_with_note

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    losses_n = result["per_number_loss"]
    n = list(range(1, len(losses_n) + 1))
    left.loglog(n, [max(v, 1e-6) for v in losses_n], "o-", ms=3, label="loss of n given 1…n-1")
    left.loglog(n, [1 / x for x in n], "--", color="gray", label="1/n")
    left.set_xlabel("number")
    left.set_ylabel("loss (nats, log)")
    left.set_title("Counting 1…80, prompted")
    left.legend()
    steps = range(len(result["finetune"]["probe_loss"]))
    right.plot(steps, result["finetune"]["probe_loss"], label="fine-tuned on 1…63")
    right.plot(steps, result["distill"]["probe_loss"], label="distilled from 1…63")
    right.plot(steps, result["distill"]["probe_72_79_loss"], ":", label="distilled, probe 72…79 (not trained on)")
    right.axhline(result["reference"]["prompted"], color="k", ls="--", label="prompted with 1…63")
    right.set_yscale("log")
    right.set_xlabel("training step")
    right.set_ylabel("mean loss per token on 64…71 (log)")
    right.set_title(f"{result['model']}: counting 64…71 without the context")
    right.legend(fontsize=8)
    note = ("smollm2-135m = SmolLM2-135M-Instruct (instruction-tuned, Q4_1-dequantised); @Lk = its first k blocks"
            if str(result["model"]).startswith("smollm2") else "")
    return save_with_note(fig, path, note)


def main(model: str = "smollm2-135m", steps: int = 30, lr: float = 1e-4, output: str = "results/counting_toy") -> None:
    """``python -m hhhlab.distill.toy``: run the toy, write results.json and counting_toy.png."""
    from hhhlab.results import write_results
    from hhhlab.stats import Estimate

    res = counting_toy(model, steps=steps, lr=lr, progress=True)
    out = Path(output)
    plot_toy(res, out / "counting_toy.png")
    def point(v: float) -> Estimate:  # one deterministic run: no CI
        return Estimate(v, v, v, 1, "point")

    write_results(out / "results.json", "distill", config={"experiment": "counting_toy", "model": model,
                  "steps": steps, "lr": lr}, payload=res,
                  estimates={"prompted_loss_64_71": point(res["reference"]["prompted"]),
                             "plain_loss_64_71": point(res["reference"]["plain"]),
                             "finetuned_loss_64_71": point(res["finetune"]["probe_loss"][-1]),
                             "distilled_loss_64_71": point(res["distill"]["probe_loss"][-1])})
    r = res["reference"]
    print(f"loss on 64..71: prompted {r['prompted']:.3f}, plain {r['plain']:.3f}, after {steps} steps: "
          f"fine-tuned {res['finetune']['probe_loss'][-1]:.3f}, distilled {res['distill']['probe_loss'][-1]:.3f} "
          f"(72..79 not trained on: distilled {res['distill']['probe_72_79_loss'][-1]:.3f}, prompted "
          f"{r['prompted_72_79']:.3f}, plain {r['plain_72_79']:.3f})")
    print(f"wrote {out / 'results.json'} and {out / 'counting_toy.png'}")


if __name__ == "__main__":
    import typer

    typer.run(main)
