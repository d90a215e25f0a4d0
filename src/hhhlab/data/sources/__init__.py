"""Readers of source formats shared by the evals (``hhhlab.evals``) and the dataset builders
(``hhhlab.data.builders``): one module per format, so an eval and a builder reading the same
file see the same records.

Each reader streams ``(where, raw, record_or_error)``: ``where`` is ``file:line``, ``raw`` the
record's text (for a rejects file), and the third element either the parsed record or the
`DataError` saying why it is malformed. A builder turns an error into a `Reject` and goes on;
an eval raises it (an eval's items must all be valid).
"""
