"""Hand-built PDFs for tests (no PDF writer needed): ordinary ones and hostile ones."""

from __future__ import annotations

import zlib
from collections.abc import Sequence


def pdf(page_streams: Sequence[bytes], *, compress: bool = False) -> bytes:
    """A PDF with one page per content stream, Helvetica as /F1; FlateDecode-compressed if asked."""
    count = len(page_streams)
    font = 3 + 2 * count
    kids = " ".join(f"{3 + 2 * i} 0 R" for i in range(count))
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", f"<< /Type /Pages /Kids [{kids}] /Count {count} >>".encode()]
    for index, stream in enumerate(page_streams):
        objects.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {4 + 2 * index} 0 R"
                       f" /Resources << /Font << /F1 {font} 0 R >> >> >>".encode())
        data = zlib.compress(stream, 9) if compress else stream
        flate = b" /Filter /FlateDecode" if compress else b""
        objects.append(b"<< /Length " + str(len(data)).encode() + flate + b" >>\nstream\n" + data + b"\nendstream")
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def text_page(text: str) -> bytes:
    return f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()


def minimal_pdf(text: str) -> bytes:
    """A one-page PDF whose page shows `text`."""
    return pdf([text_page(text)])


def slow_pdf(operators: int = 300_000) -> bytes:
    """One page whose compressed content stream holds `operators` tiny text operators: a few KB of
    file that pypdf needs seconds to extract (about 1.5 s per 100,000 on a quiet machine)."""
    return pdf([b"BT /F1 12 Tf 72 720 Td " + b"(a) Tj " * operators + b"ET"], compress=True)
