"""What a buyer may see of their order on a web page (the provider's return pages): the
plan, the groups it opens, the amount, where the order stands, and the buyer's language.
The order number is the only key; it is unguessable, and nothing here is private beyond
what the buyer typed into the provider's page themselves."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import ChatGroup, Order, Plan, PlanGroup, User
from storage.money import Money

MAX_ORDER_NO_LENGTH = 32  # orders.order_no


@dataclass(frozen=True)
class OrderView:
    order_no: str
    status: str             # pending | paid | expired | cancelled | failed | refunded
    plan: str
    groups: tuple[str, ...]
    price: Money
    language: str | None


async def order_view(session: AsyncSession, order_no: str) -> OrderView | None:
    """The order behind a return page, or None when there is no such order."""
    if (not order_no or len(order_no) > MAX_ORDER_NO_LENGTH or not order_no.isascii()
            or not order_no.isalnum()):
        return None
    row = (await session.execute(
        select(Order.order_no, Order.status, Order.amount_minor, Order.currency, Plan.id,
               Plan.title, User.language)
        .join(Plan, Plan.id == Order.plan_id).join(User, User.id == Order.user_id)
        .where(Order.order_no == order_no))).first()
    if row is None:
        return None
    groups = (await session.execute(
        select(ChatGroup.title).join(PlanGroup, PlanGroup.chat_group_id == ChatGroup.id)
        .where(PlanGroup.plan_id == row[4]).order_by(ChatGroup.id))).scalars().all()
    return OrderView(row[0], row[1], row[5], tuple(groups), Money(int(row[2]), row[3]), row[6])
