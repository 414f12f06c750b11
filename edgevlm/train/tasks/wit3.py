"""IWSLT/WIT3 XML pairs for translation: ``--data SRC.de.xml:REF.en.xml``, as the release ships them.

Each file is ``<mteval><srcset|refset><doc docid=..><seg id=..>text</seg>..</doc>..``;
a segment of the source translates to the reference segment with the same ``docid``
and ``seg id``. Metadata elements (``url``, ``title``, ``description``, ...) are ignored.
The talk (``docid``) is the source unit, so held-out splits keep whole talks.
Files with a DTD or entity declarations are refused (WIT3 has none; they could expand
without bound or reach outside the file).
"""

from __future__ import annotations

from pathlib import Path
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import parse

from edgevlm.core.errors import DataError
from edgevlm.train.tasks import Example

Talks = dict[str, dict[str, str]]  # docid -> seg id -> text (document order)


def _root(path: Path) -> Element:
    try:
        return parse(str(path), forbid_dtd=True).getroot()
    except ParseError as e:
        reason = str(e).split(": line ")[0]
        raise DataError(f"{path}:{e.position[0]}: malformed XML ({reason})") from None
    except DefusedXmlException:
        raise DataError(f"{path}: XML with a DTD or entity declarations is refused (WIT3 files have none)") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror})") from None


def _segments(doc: Element, path: Path, docid: str) -> dict[str, str]:
    segs: dict[str, str] = {}
    for j, seg in enumerate(doc.findall("seg"), 1):
        sid = (seg.get("id") or "").strip()
        if not sid:
            raise DataError(f"{path}: talk docid={docid}: <seg> number {j} has no id attribute")
        if sid in segs:
            raise DataError(f"{path}: talk docid={docid}: duplicate seg id={sid}")
        text = " ".join("".join(seg.itertext()).split())
        if not text:
            raise DataError(f"{path}: talk docid={docid} seg id={sid}: empty segment")
        segs[sid] = text
    if not segs:
        raise DataError(f"{path}: talk docid={docid} has no <seg> elements")
    return segs


def read_wit3(path: str | Path) -> Talks:
    """The talks of one WIT3 XML file: docid -> seg id -> whitespace-normalised text."""
    path = Path(path)
    talks: Talks = {}
    for k, doc in enumerate(_root(path).iter("doc"), 1):
        docid = (doc.get("docid") or "").strip()
        if not docid:
            raise DataError(f"{path}: <doc> number {k} has no docid attribute")
        if docid in talks:
            raise DataError(f"{path}: duplicate talk docid={docid}")
        talks[docid] = _segments(doc, path, docid)
    if not talks:
        raise DataError(f"{path}: no <doc> elements (expected WIT3 XML: <mteval><srcset><doc docid=..><seg id=..>)")
    return talks


def _check_same_keys(a: dict, b: dict, a_path: Path, b_path: Path, prefix: str, label: str) -> None:
    """One line naming the file that lacks the first key (talk or segment) the other file has."""
    for x, y, x_path, y_path in ((a, b, a_path, b_path), (b, a, b_path, a_path)):
        missing = next((key for key in x if key not in y), None)
        if missing is not None:
            raise DataError(f"{y_path}: {prefix}no {label}={missing} (present in {x_path})")


def load_wit3(src: str | Path, ref: str | Path) -> list[Example]:
    """One example per source segment, in the source's order; the reference must hold the same talks and segments."""
    src, ref = Path(src), Path(ref)
    a, b = read_wit3(src), read_wit3(ref)
    _check_same_keys(a, b, src, ref, "", "talk docid")
    out = []
    for docid, segs in a.items():
        _check_same_keys(segs, b[docid], src, ref, f"talk docid={docid}: ", "seg id")
        out += [Example(text, b[docid][sid], unit=f"talk {docid}") for sid, text in segs.items()]
    return out
