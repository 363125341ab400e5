"""Published data products: found from the serve stage's lineage, downloaded for a declared purpose.

A product is a dataset carrying the ``purpose`` dataset facet (audience, allowed purposes, allowed level,
jurisdictions, and the product's name). Only those datasets can be downloaded, and only their Parquet
files under the service's data root: a product name never turns into an arbitrary path. The data root
is a local folder or any fsspec URL (``memory://``, ``s3://bucket/prefix`` ...; storage options as JSON
in ``CHAINTRACE_DATA_STORAGE_OPTIONS``, as the chain reads them): a product's (namespace, name), named
by the OpenLineage naming spec, turns back into its location and is read through fsspec.

Every download request is a governance decision: a refusal writes an ``access_denied`` audit row (and a
``violation`` row when L3/L4 data would flow to a jurisdiction the policy does not allow); a grant writes
``access_granted`` and an OpenLineage run of the consumer job reading the product, with a ``purpose``
run facet, so the lineage graph shows who uses what, for what.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal, cast

import orjson
import pyarrow as pa  # type: ignore[import-untyped]  # no stubs ship with pyarrow
import pyarrow.csv as pacsv  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]
from sqlalchemy import Engine, bindparam, func, select

from lineage.governance.levels import Level, at_or_below, parse_level
from lineage.governance.policy import GovernancePolicy
from lineage.governance.principal import Principal
from lineage.service.audit import AuditService
from lineage.service.classification import ClassificationService
from lineage.service.ingest import IngestService
from lineage.service.product_files import (
    csv_chunks,
    dataset_location,
    file_chunks,
    locate,
    safe_filename,
    storage_options_from_env,
)
from lineage.settings import LineageSettings
from lineage.store import audit as audit_store
from lineage.store import schema as s
from lineage.store.audit import AuditEntry
from lineage.store.times import now

log = logging.getLogger(__name__)

Format = Literal["csv", "parquet"]
FORMATS: tuple[Format, ...] = ("csv", "parquet")
MEDIA_TYPES: dict[Format, str] = {
    "csv": "text/csv; charset=utf-8", "parquet": "application/vnd.apache.parquet",
}

CONSUMER_NAMESPACE = "chaintrace-consumers"
PRODUCER = "https://github.com/chaintrace/chaintrace/tree/main/lineage/service/products.py"
PURPOSE_OF_USE_SCHEMA = (
    "https://chaintrace.dev/spec/facets/1-0-0/PurposeOfUseRunFacet.json#/$defs/PurposeOfUseRunFacet"
)
RUN_EVENT_SCHEMA = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
#: Levels whose data may only flow to the jurisdictions the policy lists.
RESTRICTED_FLOW: frozenset[Level] = frozenset({"L3", "L4"})
MAX_PURPOSE = 200  # characters: a declared purpose is a short phrase, and it goes into the audit log


class ProductError(Exception):
    """A refused or failed product request; ``code`` is the HTTP status the route answers with."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Product:
    name: str
    namespace: str
    dataset: str
    audience: str
    allowed_purposes: tuple[str, ...]
    allowed_level: Level | None
    jurisdictions: tuple[str, ...]
    min_cell_rows: int | None
    written: str  # lww of the purpose facet: "<eventTime>|<event hash>"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "dataset": {"namespace": self.namespace, "name": self.dataset},
            "audience": self.audience, "allowedPurposes": list(self.allowed_purposes),
            "allowedLevel": self.allowed_level, "jurisdictions": list(self.jurisdictions),
            "minCellRows": self.min_cell_rows,
        }


@dataclass
class Download:
    """A granted download: the response streams ``chunks`` (which close the file when done)."""

    filename: str
    media_type: str
    rows: int
    chunks: Iterator[bytes]


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(item for item in value if isinstance(item, str)) if isinstance(value, list) else ()


def product_of(namespace: str, name: str, facet: Any, lww: str) -> Product | None:
    """The product a ``purpose`` facet declares (None for a deletion marker or a non-object)."""
    if not isinstance(facet, dict) or facet.get("_deleted"):
        return None
    declared = facet.get("product")
    product_name = declared if isinstance(declared, str) and declared else Path(name).stem
    try:
        allowed_level: Level | None = parse_level(str(facet["allowedLevel"]))
    except (KeyError, ValueError):
        allowed_level = None
    cells = facet.get("minCellRows")
    return Product(
        name=product_name, namespace=namespace, dataset=name,
        audience=facet["audience"] if isinstance(facet.get("audience"), str) else "",
        allowed_purposes=_strings(facet.get("allowedPurposes")), allowed_level=allowed_level,
        jurisdictions=_strings(facet.get("jurisdictions")),
        min_cell_rows=cells if isinstance(cells, int) and not isinstance(cells, bool) else None,
        written=lww,
    )


def consumer_event(principal: Principal, product: Product, purpose: str, fmt: Format, rows: int,
                   at: str) -> dict[str, Any]:
    """The OpenLineage COMPLETE event of one access: job ``consumer.<key name>`` reads the product."""
    return {
        "eventType": "COMPLETE", "eventTime": at, "producer": PRODUCER, "schemaURL": RUN_EVENT_SCHEMA,
        "run": {"runId": str(uuid.uuid4()), "facets": {"purpose": {
            "_producer": PRODUCER, "_schemaURL": PURPOSE_OF_USE_SCHEMA, "consumer": principal.name,
            "purpose": purpose, "accessedAt": at, "rows": rows, "format": fmt,
        }}},
        "job": {"namespace": CONSUMER_NAMESPACE, "name": f"consumer.{principal.name}", "facets": {}},
        "inputs": [{"namespace": product.namespace, "name": product.dataset}],
        "outputs": [],
    }


class ProductService:
    def __init__(
        self, engine: Engine, settings: LineageSettings, policy: GovernancePolicy,
        classification: ClassificationService, audit: AuditService, ingest: IngestService,
        *, data_root: str | Path | None = None, storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        """``data_root``: where products are served from, a path or an fsspec URL (default: the
        settings'); ``storage_options``: its fsspec options (default: ``CHAINTRACE_DATA_STORAGE_OPTIONS``)."""
        self.engine = engine
        self.data_root = str(data_root if data_root is not None else settings.data_root)
        self.storage_options = dict(storage_options if storage_options is not None
                                    else storage_options_from_env())
        self.policy = policy
        self.classification = classification
        self.audit = audit
        self.ingest = ingest

    # -- the registry -----------------------------------------------------------------------------

    def products(self) -> dict[str, Product]:
        """Every product by name; when datasets claim one name, the newest purpose facet wins."""
        f = s.dataset_facets
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(f.c.namespace, f.c.name, f.c.value, f.c.lww).where(f.c.facet == "purpose")
            ).all()
        found: dict[str, Product] = {}
        for namespace, name, value, lww in rows:
            product = product_of(namespace, name, orjson.loads(value), lww)
            if product is not None and (product.name not in found or found[product.name].written < lww):
                found[product.name] = product
        return found

    def effective_level(self, product: Product) -> Level:
        """The product dataset's effective level; L4 when it cannot be known (fail closed)."""
        try:
            level = self.classification.dataset_level(product.namespace, product.dataset)
        except NotImplementedError:
            return "L4"
        except Exception:
            log.exception("classification of product %r failed; treating it as L4", product.name)
            return "L4"
        # A dataset no column level reached gets the policy's default level, as an unmatched column does.
        return level if level is not None else self.policy.default_level

    def list_for(self, principal: Principal) -> dict[str, Any]:
        """Products the caller's clearance covers, by name; the others are counted as withheld."""
        products = sorted(self.products().values(), key=lambda p: p.name)
        dv, runs = s.dataset_versions, s.runs
        # Published = the end of the newest completed run that wrote the product's file.
        published = (
            select(func.max(runs.c.ended_at))
            .select_from(dv.join(runs, runs.c.run_id == dv.c.run_id))
            .where(dv.c.namespace == bindparam("ns"), dv.c.name == bindparam("name"),
                   runs.c.state == "COMPLETED")
        )
        with self.engine.connect() as connection:
            ended = {(p.namespace, p.dataset): connection.execute(
                published, {"ns": p.namespace, "name": p.dataset}).scalar() for p in products}
        items, withheld = [], 0
        for product in products:
            level = self.effective_level(product)
            if not principal.may_see(level):
                withheld += 1
                continue
            items.append({
                **product.to_json(), "effectiveLevel": level,
                "lastPublishedAt": ended.get((product.namespace, product.dataset))
                or product.written.split("|", 1)[0],
            })
        return {"products": items, "totalCount": len(items), "withheld": withheld}

    # -- downloads --------------------------------------------------------------------------------

    def download(self, name: str, principal: Principal, purpose: str | None, fmt: str | None) -> Download:
        """Decide on a download and, when granted, open it; raises :class:`ProductError` otherwise."""
        purpose = (purpose or "").strip()
        fmt_name = (fmt or "csv").strip().lower()
        product = self.products().get(name)
        deny = _Denier(self, name, product, principal, purpose, fmt_name)
        if not purpose:
            raise deny(400, "a declared purpose is required (?purpose=...)", "no purpose declared")
        if len(purpose) > MAX_PURPOSE:
            deny.purpose = purpose[:MAX_PURPOSE]
            raise deny(400, f"the purpose is longer than {MAX_PURPOSE} characters", "purpose too long")
        if fmt_name not in FORMATS:
            shown = fmt_name[:40]
            deny.fmt = shown
            raise deny(400, f"format must be one of {', '.join(FORMATS)}; got {shown!r}",
                       f"unsupported format {shown!r}")
        if product is None:
            raise deny(404, f"product '{name}' not found.", "no such product")
        if purpose not in product.allowed_purposes:
            allowed = ", ".join(product.allowed_purposes) or "none"
            raise deny(403, f"purpose '{purpose}' is not allowed for product '{name}' (allowed: {allowed})",
                       f"purpose '{purpose}' is not among the allowed purposes ({allowed})")
        level = self.effective_level(product)
        deny.level = level
        if not at_or_below(level, principal.clearance):
            raise deny(403, f"product '{name}' is classified {level}; this key's clearance is "
                            f"{principal.clearance}",
                       f"clearance {principal.clearance} is below the product's level {level}")
        jurisdiction = principal.jurisdiction
        if level in RESTRICTED_FLOW and not self.policy.jurisdiction_allowed(level, jurisdiction or ""):
            where = f"jurisdiction '{jurisdiction}'" if jurisdiction else "a key without a jurisdiction"
            raise deny(403, f"product '{name}' holds {level} data, which the policy does not let flow to "
                            f"{where}", f"{level} data may not flow to {where}", violation=True)
        handle, parquet = self._open(product, deny)
        if fmt_name == "csv":
            try:  # an unsupported column type fails here, before anything is sent
                pacsv.write_csv(parquet.schema_arrow.empty_table(), pa.BufferOutputStream())
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                handle.close()
                raise deny(400, f"product '{name}' cannot be written as CSV ({exc}); ask for format=parquet",
                           f"not representable as CSV: {exc}") from exc
        chosen: Format = "csv" if fmt_name == "csv" else "parquet"
        rows = parquet.metadata.num_rows
        self._grant(product, principal, purpose, chosen, rows, level)
        chunks = csv_chunks(handle, parquet) if chosen == "csv" else file_chunks(handle)
        return Download(f"{safe_filename(name)}.{chosen}", MEDIA_TYPES[chosen], rows, chunks)

    def _open(self, product: Product, deny: _Denier) -> tuple[IO[bytes], pq.ParquetFile]:
        """The product's Parquet file, opened through fsspec (a local handle stays valid should the
        file be replaced; an object store's reads one version)."""
        gone = f"the file of product '{product.name}' (dataset {product.dataset}) is gone"
        not_served = f"product '{product.name}' is not a file this service serves"
        location = dataset_location(product.namespace, product.dataset)
        if location is None:
            raise deny(404, not_served, "the product's dataset is not a file of any storage")
        try:
            root = locate(self.data_root, self.storage_options)
            same_store = "://" not in location or location.startswith(f"{root.protocol}://")
            found = locate(location, self.storage_options if same_store else {})
        except (OSError, RuntimeError, ValueError, ImportError) as exc:  # a symlink loop, no filesystem
            raise deny(404, gone, "the product's file cannot be resolved") from exc
        if not found.under(root):
            raise deny(404, not_served, "the product's file is outside the service's data root")
        try:
            handle = cast("IO[bytes]", found.fs.open(found.path, "rb"))
        except OSError as exc:
            raise deny(404, gone, "the product's file is gone") from exc
        try:
            return handle, pq.ParquetFile(handle)
        except (pa.ArrowException, OSError) as exc:
            handle.close()
            raise deny(404, f"{gone} (not a readable Parquet file)",
                       "the product's file is not a readable Parquet file") from exc

    def _grant(self, product: Product, principal: Principal, purpose: str, fmt: Format, rows: int,
               level: Level) -> None:
        at = now()
        self.audit.record([AuditEntry(
            kind="access_granted", reason=f"purpose '{purpose}' allowed; clearance {principal.clearance} "
                                          f"covers {level}",
            dataset_namespace=product.namespace, dataset_name=product.dataset, subject=principal.name,
            details={"product": product.name, "purpose": purpose, "rows": rows, "format": fmt,
                     "keyId": principal.key_id, "level": level, "jurisdiction": principal.jurisdiction},
            at=at,
        )])
        event = consumer_event(principal, product, purpose, fmt, rows, at)
        for result in self.ingest.ingest_sync([event]):
            if not result.accepted:  # a bug of ours: the audit row still records the access
                log.error("the consumer run of product %r was rejected: %s", product.name,
                          "; ".join(f"{e.path}: {e.message}" for e in result.errors))

    # -- usage --------------------------------------------------------------------------------------

    def usage(self, name: str, limit: int, offset: int) -> dict[str, Any]:
        """Who downloaded the product, when, for what purpose, newest first (from the audit log)."""
        product = self.products().get(name)
        if product is None:
            raise ProductError(404, f"product '{name}' not found.")
        entries, total = audit_store.query(self.engine, namespace=product.namespace, name=product.dataset,
                                           kind="access_granted", limit=limit, offset=offset)
        return {"product": name, "dataset": {"namespace": product.namespace, "name": product.dataset},
                "usage": [{"consumer": e["subject"], "at": e["at"], "purpose": e["details"].get("purpose"),
                           "rows": e["details"].get("rows"), "format": e["details"].get("format"),
                           "keyId": e["details"].get("keyId")} for e in entries],
                "totalCount": total}


class _Denier:
    """Builds the error of a refusal after writing its audit rows."""

    def __init__(self, service: ProductService, name: str, product: Product | None, principal: Principal,
                 purpose: str, fmt: str) -> None:
        self.service, self.name, self.product = service, name, product
        self.principal, self.purpose, self.fmt = principal, purpose, fmt
        self.level: Level | None = None

    def __call__(self, code: int, message: str, reason: str, *, violation: bool = False) -> ProductError:
        details: dict[str, Any] = {"product": self.name, "purpose": self.purpose or None,
                                   "format": self.fmt, "keyId": self.principal.key_id, "status": code}
        if self.level is not None:
            details["level"] = self.level
        if self.principal.jurisdiction is not None:
            details["jurisdiction"] = self.principal.jurisdiction
        where = {"dataset_namespace": self.product.namespace, "dataset_name": self.product.dataset} \
            if self.product is not None else {}
        entries = [AuditEntry(kind="access_denied", reason=reason, subject=self.principal.name,
                              details=details, **where)]
        if violation:
            entries.append(AuditEntry(kind="violation", reason=f"blocked flow to a consumer: {reason}",
                                      subject=self.principal.name, details=details, **where))
        self.service.audit.record(entries)
        return ProductError(code, message)
