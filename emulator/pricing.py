"""The AWS Price List Query API (``pricing``, JSON 1.1, ``X-Amz-Target: AWSPriceListService.<Op>``), for the
offer code ``AmazonBedrock`` only, from the emulator's own facts (emulator/facts/prices.yaml).

Served: ``GetProducts`` (filters TERM_MATCH/EQUALS, CONTAINS, ANY_OF, NONE_OF on any product attribute; MaxResults
1-100 and NextToken pages), ``DescribeServices``, ``GetAttributeValues``. Not served: ``ListPriceLists``,
``GetPriceListFileUrl`` (the bulk files). Products are the Price List's JSON documents (``PriceList`` items are JSON
strings): ``product.attributes`` (``usagetype``, ``regionCode``, ``servicecode``, ...), ``terms.OnDemand`` with one
price dimension (``unit``, ``pricePerUnit.USD``, ``description``), ``publicationDate``
(https://docs.aws.amazon.com/awsaccountbilling/latest/aboutv2/reading-service-price-list-file-for-services.html).
Layout as the Bedrock service: the facts (model) apart from request parsing (``PricingResponses``), typed errors.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

FACTS_FILE = Path(__file__).with_name("facts") / "prices.yaml"
OFFER_CODE = "AmazonBedrock"
FORMAT_VERSION = "aws_v1"
TARGET_PREFIX = "AWSPriceListService."
FILTER_TYPES = ("TERM_MATCH", "EQUALS", "CONTAINS", "ANY_OF", "NONE_OF")   # botocore pricing FilterType enum


class PricingError(Exception):
    """An error the Price List API models (botocore pricing-2017-10-15 error shapes, all HTTP 400)."""

    def __init__(self, code: str, message: str, status: int = 400):
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


@dataclass(frozen=True)
class Product:
    """One Price List product with its one on-demand price dimension."""

    usage_type: str
    usd: str
    unit: str
    description: str
    attributes: dict[str, str]
    effective_date: str
    publication_date: str
    version: str

    @property
    def sku(self) -> str:
        return base64.b32encode(hashlib.sha256(self.usage_type.encode()).digest())[:16].decode()

    def to_wire(self) -> dict[str, Any]:
        term, rate = "JRTCKXETXF", "6YS6EN2CT7"         # the on-demand offer term code the Price List uses
        return {
            "product": {"productFamily": self.attributes.get("productFamily", "Amazon Bedrock"),
                        "attributes": {**self.attributes, "usagetype": self.usage_type,
                                       "servicecode": OFFER_CODE},
                        "sku": self.sku},
            "serviceCode": OFFER_CODE,
            "terms": {"OnDemand": {f"{self.sku}.{term}": {
                "priceDimensions": {f"{self.sku}.{term}.{rate}": {
                    "unit": self.unit, "endRange": "Inf", "description": self.description, "appliesTo": [],
                    "rateCode": f"{self.sku}.{term}.{rate}", "beginRange": "0",
                    "pricePerUnit": {"USD": self.usd}}},
                "sku": self.sku, "effectiveDate": self.effective_date, "offerTermCode": term,
                "termAttributes": {}}}},
            "version": self.version,
            "publicationDate": self.publication_date,
        }


@dataclass
class PriceFacts:
    products: list[Product] = field(default_factory=list)

    def attribute_names(self) -> list[str]:
        names = {"servicecode", "usagetype"}
        for p in self.products:
            names |= set(p.attributes)
        return sorted(names)


@lru_cache(maxsize=1)
def load_price_facts(path: str | None = None) -> PriceFacts:
    raw = yaml.safe_load(Path(path or FACTS_FILE).read_text(encoding="utf-8")) or {}
    meta = raw.get("price_list") or {}
    products = []
    for usage, p in (raw.get("products") or {}).items():
        attrs = {str(k): str(v) for k, v in (p.get("attributes") or {}).items()}
        if p.get("region"):
            attrs.setdefault("regionCode", str(p["region"]))
        products.append(Product(usage_type=str(usage), usd=f"{float(p['usd']):.10f}", unit=str(p["unit"]),
                                description=str(p.get("description", "")), attributes=attrs,
                                effective_date=str(p.get("effective_date") or meta.get("effective_date", "")),
                                publication_date=str(meta.get("publication_date", "")),
                                version=str(meta.get("version", ""))))
    return PriceFacts(products)


def _value_of(product: Product, fld: str) -> str | None:
    attrs = {**product.attributes, "usagetype": product.usage_type, "servicecode": OFFER_CODE}
    for k, v in attrs.items():
        if k.lower() == fld.lower():
            return v
    return None


def _matches(product: Product, flt: dict) -> bool:
    kind, fld, value = flt.get("Type"), str(flt.get("Field", "")), str(flt.get("Value", ""))
    have = _value_of(product, fld)
    if kind in ("TERM_MATCH", "EQUALS"):
        return have is not None and have.lower() == value.lower()
    if kind == "CONTAINS":
        return have is not None and value.lower() in have.lower()
    values = {v.strip().lower() for v in value.split(",") if v.strip()}
    if kind == "ANY_OF":
        return have is not None and have.lower() in values
    return have is None or have.lower() not in values          # NONE_OF


class PricingResponses:
    """Request parsing and serialization for the Price List operations (behaviour: ``PriceFacts``)."""

    SERVED = ("GetProducts", "DescribeServices", "GetAttributeValues")

    def __init__(self, facts: PriceFacts | None = None):
        self.facts = facts or load_price_facts()

    def dispatch(self, target: str, body: dict) -> dict:
        op = target[len(TARGET_PREFIX):] if target.startswith(TARGET_PREFIX) else ""
        if op not in self.SERVED:
            raise PricingError("UnknownOperationException", f"The emulator does not serve {target or 'this call'}"
                                                            " (docs/emulator.md).")
        return getattr(self, "_" + op)(body)

    def _service(self, body: dict) -> None:
        code = body.get("ServiceCode")
        if not isinstance(code, str) or not code:
            raise PricingError("InvalidParameterException", "ServiceCode is required.")
        if code != OFFER_CODE:
            raise PricingError("NotFoundException", f"Service code {code} not found (the emulator prices "
                                                    f"{OFFER_CODE} only).")

    def _page(self, items: list, body: dict, default: int) -> tuple[list, str | None]:
        size = body.get("MaxResults", default)
        if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= 100:
            raise PricingError("InvalidParameterException", "MaxResults must be between 1 and 100.")
        start = 0
        token = body.get("NextToken")
        if token:
            try:
                start = int(base64.b64decode(str(token)).decode())
            except Exception:  # noqa: BLE001 - any bad token is the modelled error
                raise PricingError("InvalidNextTokenException", "The pagination token is invalid.") from None
        end = start + size
        return items[start:end], (base64.b64encode(str(end).encode()).decode() if end < len(items) else None)

    def _GetProducts(self, body: dict) -> dict:
        self._service(body)
        fv = body.get("FormatVersion", FORMAT_VERSION)
        if fv != FORMAT_VERSION:
            raise PricingError("InvalidParameterException", f"FormatVersion {fv} is not supported; use "
                                                            f"{FORMAT_VERSION}.")
        filters = body.get("Filters") or []
        if not isinstance(filters, list) or len(filters) > 50:
            raise PricingError("InvalidParameterException", "Filters: at most 50.")
        for f in filters:
            if not isinstance(f, dict) or f.get("Type") not in FILTER_TYPES or not f.get("Field") \
                    or "Value" not in f:
                raise PricingError("InvalidParameterException", f"Invalid filter {f!r}: Type one of "
                                                                f"{', '.join(FILTER_TYPES)}, Field and Value.")
        hits = [p for p in self.facts.products if all(_matches(p, f) for f in filters)]
        page, token = self._page(hits, body, 100)
        out: dict[str, Any] = {"FormatVersion": FORMAT_VERSION, "PriceList": [json.dumps(p.to_wire()) for p in page]}
        if token:
            out["NextToken"] = token
        return out

    def _DescribeServices(self, body: dict) -> dict:
        code = body.get("ServiceCode")
        if code not in (None, OFFER_CODE):
            raise PricingError("NotFoundException", f"Service code {code} not found.")
        return {"Services": [{"ServiceCode": OFFER_CODE, "AttributeNames": self.facts.attribute_names()}],
                "FormatVersion": FORMAT_VERSION}

    def _GetAttributeValues(self, body: dict) -> dict:
        self._service(body)
        name = body.get("AttributeName")
        if not isinstance(name, str) or not name:
            raise PricingError("InvalidParameterException", "AttributeName is required.")
        values = sorted({v for p in self.facts.products if (v := _value_of(p, name)) is not None})
        if not values:
            raise PricingError("NotFoundException", f"Attribute {name} not found for {OFFER_CODE}.")
        page, token = self._page(values, body, 100)
        out: dict[str, Any] = {"AttributeValues": [{"Value": v} for v in page]}
        if token:
            out["NextToken"] = token
        return out
