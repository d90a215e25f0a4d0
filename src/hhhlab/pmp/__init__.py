"""Preference-model pre-training (PMP, paper §4 / digest §5): pre-train a PM on large ranked
public data (StackExchange, Reddit, Wikipedia; binarized or ranked), then fine-tune on small
target sets and measure how many fine-tuning pairs it saves. See docs/pmp.md.

* `hhhlab.pmp.config` — `PMPConfig`, `FinetuneConfig` (the single source of the CLI flags);
* `hhhlab.pmp.prepare` — sources -> one sampled pair per group -> binarized or ranked JSONL (streamed);
* `hhhlab.pmp.pretrain` — `run_pmp`: λ·L_PM + μ·L_LM over a seeded weighted streamed mixture;
* `hhhlab.pmp.finetune` — `run_finetune`: the first n pairs of one fixed shuffle, for each n;
* `hhhlab.pmp.synthetic` — the App. C.6 / Fig 33 ranked-vs-binary experiment's data;
* `hhhlab.pmp.analysis` — fine-tuning pairs saved at equal accuracy (log-n interpolation, bootstrap CI);
* `hhhlab.pmp.sweep` — `sweep pmp` and `sweep pmp-synthetic`.
"""
