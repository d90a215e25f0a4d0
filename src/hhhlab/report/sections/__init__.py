"""The report's sections, one per stage of the lab, in the order the report shows them.

A new stage adds its section by writing a module here with a `Section` subclass and listing it
in `SECTIONS`; the section reads only results documents of the kinds it declares.
"""

from __future__ import annotations

from hhhlab.report.sections.base import Section
from hhhlab.report.sections.demo import SanitySection
from hhhlab.report.sections.distill import DistillSection
from hhhlab.report.sections.elo import EloSection
from hhhlab.report.sections.evals import EvalsSection
from hhhlab.report.sections.pm_vs_il import PmVsIlSection
from hhhlab.report.sections.pmp import PmpSection
from hhhlab.report.sections.rerank import RerankSection

SECTIONS: tuple[Section, ...] = (SanitySection(), EvalsSection(), PmVsIlSection(), RerankSection(), DistillSection(),
                                 PmpSection(), EloSection())

__all__ = ["SECTIONS", "Section"]
