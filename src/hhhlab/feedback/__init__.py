"""Human feedback: the A/B comparison interface, Elo from comparisons, comparisons as data.

The path of the data (paper §2.4, Fig 1, Fig 9, Table 2):

* ``systems.py`` — the models and conditions under test (plain / prompt / ``distilled:DIR``),
  loaded once, framing a multi-turn conversation through ``hhhlab.prompts`` and sampling with the
  paper's T = 1, top-p = 0.95, stop at the next "Human:" turn, one forward pass at a time;
* ``schedule.py`` — which two systems a rater sees next (balanced over pairs, sides randomised);
* ``app.py`` (+ ``security.py``, ``templates/``) — the web app ``hhhlab serve`` runs;
* ``db.py`` — every comparison, committed before the rater sees the next page (SQLAlchemy);
* ``qc.py`` — quality-control flags (too fast, one-sided rater, identity-revealing response);
* ``elo.py`` — Bradley–Terry by maximum likelihood with the PM loss on the Elo scale;
* ``figures.py`` — the head-to-head win table (Table 2) and Elo vs parameters (Fig 9);
* ``cli.py`` — ``hhhlab serve`` and ``hhhlab elo``.

``hhhlab data build feedback --db URL`` (``data/builders/feedback.py``) turns the stored
comparisons into preference groups for ``hhhlab pm train``. docs/feedback.md is the manual.
"""
