"""What a buyer may see of their order on a web page (the provider's return pages): the
plan and the groups it opens (or, for a top-up, what it credits), the amount, where the
order stands, and the buyer's language.
The order number is the only key; it is unguessable, and nothing here is private beyond
what the buyer typed into the provider's page themselves."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from storage.models import ChatGroup, Order, Plan, PlanGroup, TopupProduct, User
from storage.money import Money

MAX_ORDER_NO_LENGTH = 32  # orders.order_no


@dataclass(frozen=True)
class OrderView:
    order_no: str
    status: str  # pending | paid | expired | cancelled | failed | refunded
    plan: str
    groups: tuple[str, ...]
    price: Money
    language: str | None
    # A top-up (kind "topup"): no plan and no groups; `bonus` is what it adds on top.
    kind: str = "plan"
    bonus: Money | None = None


async def order_view(session: AsyncSession, order_no: str) -> OrderView | None:
    """The order behind a return page, or None when there is no such order."""
    if (
        not order_no
        or len(order_no) > MAX_ORDER_NO_LENGTH
        or not order_no.isascii()
        or not order_no.isalnum()
    ):
        return None
    row = (
        await session.execute(
            select(
                col(Order.order_no),
                col(Order.status),
                col(Order.amount_minor),
                col(Order.currency),
                col(Plan.id),
                col(Plan.title),
                col(User.language),
                col(Order.kind),
                col(TopupProduct.bonus_minor),
            )
            .outerjoin(Plan, col(Plan.id) == col(Order.plan_id))
            .outerjoin(TopupProduct, col(TopupProduct.id) == col(Order.topup_id))
            .join(User, col(User.id) == col(Order.user_id))
            .where(col(Order.order_no) == order_no)
        )
    ).first()
    if row is None:
        return None
    price = Money(int(row[2]), row[3])
    if row[4] is None:  # a top-up: it buys wallet balance, no plan, no groups
        bonus = Money(int(row[8] or 0), row[3])
        return OrderView(row[0], row[1], "", (), price, row[6], "topup", bonus)
    groups = (
        (
            await session.execute(
                select(col(ChatGroup.title))
                .join(PlanGroup, col(PlanGroup.chat_group_id) == col(ChatGroup.id))
                .where(col(PlanGroup.plan_id) == row[4])
                .order_by(col(ChatGroup.id))
            )
        )
        .scalars()
        .all()
    )
    return OrderView(row[0], row[1], row[5], tuple(groups), price, row[6])
