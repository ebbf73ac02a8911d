"""Pydantic field types for money in the models read at the edges (input events, policy files):
yuan in, integer fen kept; ratios as exact Decimals in [0, 1]. Floats are refused by both. Apart
from gongji.common.money so that the arithmetic stays free of pydantic."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import BeforeValidator

from gongji.common.money import to_fen, to_ratio

Fen = Annotated[int, BeforeValidator(to_fen)]
Ratio = Annotated[Decimal, BeforeValidator(to_ratio)]
