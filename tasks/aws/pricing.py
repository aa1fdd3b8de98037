"""The AWS Price List Query API (``pricing``): one product's on-demand price by its usage type.

Bedrock's prices are published there, machine-readably, under the offer code ``AmazonBedrock`` (the pricing page
https://aws.amazon.com/bedrock/pricing/ renders the same figures client-side). ``GetProducts`` is read-only and free,
so the cost estimate may read it before anything is created. The API is served from a few Regions only
(``api.pricing.us-east-1.amazonaws.com``, ``api.pricing.ap-south-1.amazonaws.com``; botocore's endpoint data) and
answers for every Region's prices, so the client is always made in :data:`PRICE_LIST_REGION`. ``pricing:GetProducts``
has no resource type: its IAM statement is ``Resource: "*"`` (docs/permissions.md).

A product is a JSON document (``PriceList`` items are JSON strings, botocore shape ``PriceListJsonItem``):
``product.attributes.usagetype``, and ``terms.OnDemand.<term>.priceDimensions.<dim>`` with ``unit``,
``pricePerUnit.USD``, ``description``; the term's ``effectiveDate``; the document's ``publicationDate``
(https://docs.aws.amazon.com/awsaccountbilling/latest/aboutv2/reading-service-price-list-file-for-services.html,
as of 2026-12-04). Nothing here knows Bedrock's models: the caller names the usage type (tasks/estimate.py
``live_prices``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

PRICE_LIST_REGION = "us-east-1"
SERVICE_CODE = "AmazonBedrock"


@dataclass(frozen=True)
class PriceQuote:
    """One usage type's on-demand price as the Price List states it."""

    usage_type: str
    usd: float
    unit: str
    description: str = ""
    effective_date: str = ""
    publication_date: str = ""

    @property
    def source(self) -> str:
        when = self.publication_date or self.effective_date
        return f"AWS Price List ({SERVICE_CODE} {self.usage_type}{', ' + when[:10] if when else ''})"


def pricing_client(session: Any, endpoint_url: str | None = None, config: Any = None) -> Any:
    """A ``pricing`` client in :data:`PRICE_LIST_REGION` (the run's endpoint, e.g. the emulator, when set)."""
    kw: dict[str, Any] = {"region_name": PRICE_LIST_REGION}
    if endpoint_url:
        kw["endpoint_url"] = endpoint_url
    if config is not None:
        kw["config"] = config
    return session.client("pricing", **kw)


def parse_product(item: str | dict) -> list[PriceQuote]:
    """The on-demand price dimensions of one ``PriceList`` item (a JSON string, or its parsed dict)."""
    doc = json.loads(item) if isinstance(item, str) else item
    attrs = (doc.get("product") or {}).get("attributes") or {}
    usage = str(attrs.get("usagetype", ""))
    out = []
    for term in ((doc.get("terms") or {}).get("OnDemand") or {}).values():
        for dim in (term.get("priceDimensions") or {}).values():
            usd = (dim.get("pricePerUnit") or {}).get("USD")
            if usd is None:
                continue
            try:
                value = float(usd)
            except (TypeError, ValueError):
                continue
            out.append(PriceQuote(usage_type=usage, usd=value, unit=str(dim.get("unit", "")),
                                  description=str(dim.get("description", "")),
                                  effective_date=str(term.get("effectiveDate", "")),
                                  publication_date=str(doc.get("publicationDate", ""))))
    return out


def get_price(client: Any, usage_type: str) -> PriceQuote | None:
    """The on-demand price of ``usage_type`` (None: the Price List has no such product, or it has several
    different prices for it — never a guess). Raises botocore's ``ClientError`` (AccessDenied, throttling) and
    connection errors to the caller, which decides what a missing price means."""
    resp = client.get_products(ServiceCode=SERVICE_CODE, FormatVersion="aws_v1", MaxResults=10,
                               Filters=[{"Type": "TERM_MATCH", "Field": "usagetype", "Value": usage_type}])
    quotes = [q for item in resp.get("PriceList") or [] for q in parse_product(item) if q.usage_type == usage_type]
    figures = {(q.usd, q.unit.lower()) for q in quotes}
    if len(figures) != 1:
        return None
    return quotes[0]
