"""QIDO-RS (PS3.18 §10.6): search studies, series and instances the caller may see.

Answers `application/dicom+json` with the attributes PS3.18 Table 6.7.1-2 lists, taken from the
database (UIDs, pseudonym, shifted study date, counts) and from the stored, pseudonymised headers
(times, sex, series number, …). Matching: UID lists (comma or backslash), date ranges
(`20200101-20201231`, `-2020…`, `2020…-`), `*`/`?` wildcards on text, case-insensitive on names.
A matching key this server cannot apply is ignored with a `Warning: 299` header, as the standard
asks; more results than `limit` add a warning too. Unknown or invisible studies simply do not match.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from django.db.models import Count, Q, QuerySet, Sum
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from pydicom.datadict import keyword_for_tag, tag_for_keyword

from core.models import Scan, Study, User
from core.selectors import scans_visible_to
from imaging.dicomweb.auth import dicomweb_endpoint, error
from imaging.dicomweb.wado import _path, instance_json, series_metadata_bytes

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
RESERVED = {"limit", "offset", "includefield", "fuzzymatching"}

# Attributes returned by default (PS3.18 Table 6.7.1-2), as tags; each level also returns its
# own UIDs and RetrieveURL.
STUDY_FROM_HEADER = ("00080030", "00080050", "00080090", "00100030", "00100040", "00200010", "00080201")
SERIES_FROM_HEADER = ("00200011", "00080021", "00080031", "00400244", "00400245", "00081050")
INSTANCE_DEFAULT = (
    "00080016",
    "00080018",
    "00200013",
    "00280010",
    "00280011",
    "00280100",
    "00280008",
    "0020000D",
    "0020000E",
)


class BadQuery(ValueError):
    pass


@dataclass
class Query:
    filters: dict[str, str]  # keyword -> raw matching value
    limit: int
    offset: int
    include_all: bool
    include: set[str]  # extra tags (8 hex digits) to return
    warnings: list[str] = field(default_factory=list)


def _tag_hex(key: str) -> str:
    """A query key (keyword or 8 hex digits) as 8 upper-case hex digits."""
    if re.fullmatch(r"[0-9A-Fa-f]{8}", key):
        return key.upper()
    tag = tag_for_keyword(key)
    if tag is None:
        raise BadQuery(f"unknown attribute {key!r}: use a DICOM keyword or an 8-digit tag")
    return f"{tag:08X}"


def _keyword(key: str) -> str:
    return keyword_for_tag(int(_tag_hex(key), 16)) or _tag_hex(key)


def parse_query(request: HttpRequest) -> Query:
    params = request.GET
    try:
        limit = min(MAX_LIMIT, max(1, int(params.get("limit", DEFAULT_LIMIT))))
        offset = max(0, int(params.get("offset", 0)))
    except ValueError as exc:
        raise BadQuery("limit and offset must be integers") from exc
    include: set[str] = set()
    include_all = False
    for raw in params.getlist("includefield"):
        for item in filter(None, (v.strip() for v in raw.split(","))):
            if item.lower() == "all":
                include_all = True
            else:
                include.add(_tag_hex(item))
    query = Query({}, limit, offset, include_all, include)
    if params.get("fuzzymatching", "false").lower() == "true":
        query.warnings.append("fuzzy matching is not supported; exact and wildcard matching was applied")
    for key in params:
        if key in RESERVED:
            continue
        if "." in key:
            query.warnings.append(f"the sequence matching key {key} is not supported and was ignored")
            continue
        value = params.get(key, "")
        if value != "":
            query.filters[_keyword(key)] = value
    return query


# --- matching -------------------------------------------------------------------------------


def uid_list(value: str) -> list[str]:
    return [v.strip() for v in re.split(r"[,\\]", value) if v.strip()]


def _wildcard_regex(pattern: str) -> str:
    return "^" + "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern) + "$"


def text_q(field_name: str, pattern: str, *, case_insensitive: bool = False) -> Q:
    if "*" in pattern or "?" in pattern:
        return Q(**{f"{field_name}__{'iregex' if case_insensitive else 'regex'}": _wildcard_regex(pattern)})
    return Q(**{f"{field_name}__{'iexact' if case_insensitive else 'exact'}": pattern})


def _date(text: str) -> dt.date:
    text = text.strip().replace("-", "")
    if not re.fullmatch(r"\d{8}", text):
        raise BadQuery(f"dates look like YYYYMMDD, not {text!r}")
    return dt.date(int(text[:4]), int(text[4:6]), int(text[6:]))


def date_q(field_name: str, value: str) -> Q:
    """Single date or range: 20200101, 20200101-20201231, -20201231, 20200101-."""
    if "-" in value.strip("-") or value.startswith("-") or value.endswith("-"):
        start, _, end = value.partition("-") if not value.startswith("-") else ("", "", value[1:])
        q = Q()
        if start:
            q &= Q(**{f"{field_name}__gte": _date(start)})
        if end:
            q &= Q(**{f"{field_name}__lte": _date(end)})
        return q
    return Q(**{field_name: _date(value)})


def _modalities_match(value: str) -> bool:
    return "CT" in {m.upper() for m in uid_list(value)} or value in {"*", "C*", "CT*"}


def json_value_matches(element: dict | None, pattern: str) -> bool:
    """Post-filter on a DICOM JSON element (instance level): list, wildcard or exact."""
    if element is None:
        return False
    values = []
    for v in element.get("Value", []):
        values.append(v.get("Alphabetic", "") if isinstance(v, dict) else str(v))
    if element.get("vr") == "UI" and ("," in pattern or "\\" in pattern):
        return any(v in uid_list(pattern) for v in values)
    regex = re.compile(_wildcard_regex(pattern), re.IGNORECASE if element.get("vr") == "PN" else 0)
    return any(regex.match(v) for v in values)


STUDY_MATCHERS = {
    "StudyInstanceUID": lambda v, p: Q(**{f"{p}study_uid__in": uid_list(v)}),
    "StudyDate": lambda v, p: date_q(f"{p}study_date", v),
    "StudyDescription": lambda v, p: text_q(f"{p}description", v, case_insensitive=True),
    "PatientID": lambda v, p: text_q(f"{p}patient__pseudonym", v),
    # Stored files name the patient by the pseudonym, as the ID.
    "PatientName": lambda v, p: text_q(f"{p}patient__pseudonym", v, case_insensitive=True),
    "ModalitiesInStudy": lambda v, p: Q() if _modalities_match(v) else Q(pk__in=[]),
}
SERIES_MATCHERS = {
    "SeriesInstanceUID": lambda v: Q(series_uid__in=uid_list(v)),
    "Modality": lambda v: Q() if _modalities_match(v) else Q(pk__in=[]),
    "SeriesDescription": lambda v: text_q("description", v, case_insensitive=True),
}


def _apply(query: Query, qs: QuerySet, level: str) -> QuerySet:
    for keyword, value in query.filters.items():
        if keyword in STUDY_MATCHERS:
            qs = qs.filter(STUDY_MATCHERS[keyword](value, "" if level == "study" else "study__"))
        elif keyword in SERIES_MATCHERS and level != "study":
            qs = qs.filter(SERIES_MATCHERS[keyword](value))
        elif keyword == "SOPClassUID" and level == "instance":
            if CT_IMAGE_STORAGE not in uid_list(value):
                qs = qs.none()  # every stored instance is CT Image Storage
        elif level != "instance":  # instance keys are matched on the stored headers
            query.warnings.append(f"matching on {keyword} is not supported at this level and was ignored")
    return qs


# --- DICOM JSON -----------------------------------------------------------------------------


def _el(vr: str, *values: object) -> dict:
    values = tuple(v for v in values if v not in (None, ""))
    if not values:
        return {"vr": vr}
    if vr == "PN":
        return {"vr": vr, "Value": [{"Alphabetic": str(v)} for v in values]}
    return {"vr": vr, "Value": list(values)}


@functools.lru_cache(maxsize=4096)
def _header(path: str, mtime_ns: int) -> dict:
    return instance_json(Path(path))


def header_of(scan: Scan) -> dict:
    """DICOM JSON of a scan's first stored instance (series and study-level attributes)."""
    first = scan.instances.order_by("index").values_list("file_name", flat=True).first()
    if first is None:
        return {}
    path = _path(scan, first)
    try:
        return _header(str(path), os.stat(path).st_mtime_ns)
    except OSError:
        return {}


def _copy(out: dict, header: dict, tags: tuple[str, ...] | set[str]) -> None:
    for tag in tags:
        if tag in header and tag not in out:
            out[tag] = header[tag]


def _url(request: HttpRequest, name: str, **kwargs: str) -> str:
    return request.build_absolute_uri(reverse(name, kwargs=kwargs))


def study_json(request: HttpRequest, study: Study, counts: dict, header: dict, query: Query) -> dict:
    out = {
        "00080020": _el("DA", study.study_date.strftime("%Y%m%d") if study.study_date else None),
        "00080056": _el("CS", "ONLINE"),
        "00080061": _el("CS", "CT"),
        "00081030": _el("LO", study.description),
        "00081190": _el("UR", _url(request, "dicomweb-study", study=study.study_uid)),
        "00100010": _el("PN", study.patient.pseudonym),
        "00100020": _el("LO", study.patient.pseudonym),
        "0020000D": _el("UI", study.study_uid),
        "00201206": _el("IS", counts.get("series", 0)),
        "00201208": _el("IS", counts.get("instances", 0)),
    }
    _copy(out, header, STUDY_FROM_HEADER)
    _copy(out, header, header.keys() if query.include_all else query.include)
    return dict(sorted(out.items()))


def series_json(request: HttpRequest, scan: Scan, header: dict, query: Query, *, with_study: bool) -> dict:
    study = scan.study
    out = {
        "00080060": _el("CS", "CT"),
        "0008103E": _el("LO", scan.description),
        "00081190": _el(
            "UR", _url(request, "dicomweb-series", study=study.study_uid, series=scan.series_uid)
        ),
        "0020000D": _el("UI", study.study_uid),
        "0020000E": _el("UI", scan.series_uid),
        "00201209": _el("IS", scan.slices),
    }
    if with_study:
        out |= {
            "00080020": _el("DA", study.study_date.strftime("%Y%m%d") if study.study_date else None),
            "00081030": _el("LO", study.description),
            "00100010": _el("PN", study.patient.pseudonym),
            "00100020": _el("LO", study.patient.pseudonym),
        }
    _copy(out, header, SERIES_FROM_HEADER)
    _copy(out, header, header.keys() if query.include_all else query.include)
    return dict(sorted(out.items()))


def instance_json_out(request: HttpRequest, scan: Scan, item: dict, query: Query) -> dict:
    if query.include_all:
        out = dict(item)
    else:
        out = {}
        _copy(out, item, INSTANCE_DEFAULT)
        _copy(out, item, query.include)
    sop = item.get("00080018", {}).get("Value", [""])[0]
    out["00080056"] = _el("CS", "ONLINE")
    out["00081190"] = _el(
        "UR", _url(request, "dicomweb-instance", study=scan.study.study_uid, series=scan.series_uid, sop=sop)
    )
    return dict(sorted(out.items()))


# --- responses --------------------------------------------------------------------------------


def _respond(request: HttpRequest, results: list[dict], more: bool, query: Query) -> HttpResponse:
    response = HttpResponse(json.dumps(results), content_type="application/dicom+json")
    host = request.get_host()
    warnings = list(dict.fromkeys(query.warnings))
    if more:
        warnings.append("there are more results; ask for them with offset")
    if warnings:
        response["Warning"] = ", ".join(f'299 {host} "{w}"' for w in warnings)
    return response


def _wants_xml_only(request: HttpRequest) -> bool:
    accept = request.META.get("HTTP_ACCEPT", "")
    return "dicom+xml" in accept and "json" not in accept and "*/*" not in accept


def qido_view(view):
    """Authentication, the JSON-only check and query errors for the three search levels."""

    @dicomweb_endpoint(("GET",))
    @functools.wraps(view)
    def wrapper(request: HttpRequest, user: User, *args, **kwargs) -> HttpResponse:
        if _wants_xml_only(request):
            return error(406, "this server answers QIDO-RS in application/dicom+json only", "not_acceptable")
        try:
            query = parse_query(request)
            return view(request, user, query, *args, **kwargs)
        except BadQuery as exc:
            return error(400, str(exc), "invalid_query")

    return wrapper


def visible_scans(user: User) -> QuerySet[Scan]:
    """Scans the user may read, as a plain queryset (no DISTINCT) safe to aggregate over."""
    return Scan.objects.filter(pk__in=scans_visible_to(user).values("pk"))


@qido_view
def search_studies(request: HttpRequest, user: User, query: Query) -> HttpResponse:
    scans = visible_scans(user)
    studies = Study.objects.filter(pk__in=scans.values("study_id")).select_related("patient")
    studies = _apply(query, studies, "study").order_by("-study_date", "-pk")
    page = list(studies[query.offset : query.offset + query.limit + 1])
    more = len(page) > query.limit
    page = page[: query.limit]
    counts = {
        row["study_id"]: {"series": row["series"], "instances": row["instances"]}
        for row in scans.filter(study__in=page)
        .values("study_id")
        .annotate(series=Count("pk"), instances=Sum("slices"))
    }
    first_scans = {}
    for scan in scans.filter(study__in=page).order_by("pk"):
        first_scans.setdefault(scan.study_id, scan)
    results = [
        study_json(
            request,
            s,
            counts.get(s.pk, {}),
            header_of(first_scans[s.pk]) if s.pk in first_scans else {},
            query,
        )
        for s in page
    ]
    return _respond(request, results, more, query)


@qido_view
def search_series(request: HttpRequest, user: User, query: Query, study: str | None = None) -> HttpResponse:
    scans = visible_scans(user).select_related("study__patient")
    if study is not None:
        scans = scans.filter(study__study_uid=study)
    scans = _apply(query, scans, "series").order_by("study_id", "pk")
    page = list(scans[query.offset : query.offset + query.limit + 1])
    more = len(page) > query.limit
    results = [
        series_json(request, s, header_of(s), query, with_study=study is None) for s in page[: query.limit]
    ]
    return _respond(request, results, more, query)


@qido_view
def search_instances(
    request: HttpRequest, user: User, query: Query, study: str | None = None, series: str | None = None
) -> HttpResponse:
    scans = visible_scans(user).select_related("study__patient")
    if study is not None:
        scans = scans.filter(study__study_uid=study)
    if series is not None:
        scans = scans.filter(series_uid=series)
    scans = _apply(query, scans, "instance").order_by("study_id", "pk")
    json_filters = {
        _tag_hex(k): v
        for k, v in query.filters.items()
        if k not in STUDY_MATCHERS and k not in SERIES_MATCHERS and k != "SOPClassUID"
    }
    results: list[dict] = []
    skipped = 0
    more = False
    for scan in scans.iterator():
        for item in json.loads(series_metadata_bytes(scan)):
            if not all(json_value_matches(item.get(tag), value) for tag, value in json_filters.items()):
                continue
            if skipped < query.offset:
                skipped += 1
                continue
            if len(results) == query.limit:
                more = True
                break
            results.append(instance_json_out(request, scan, item, query))
        if more:
            break
    return _respond(request, results, more, query)
