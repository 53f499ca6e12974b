"""The capture-file core: bytes <-> packet records, with no I/O of its own (file objects are passed in).

- classic: incremental pcap reader (header validation, cut streams), byte-exact pass-through writer;
- pcapng / ngreader: pcapng writer (labelled interfaces, comments, statistics) and incremental reader;
- merge: k-way merge of finished captures and a reorder window for live streams;
- transcode: classic pcap chunks straight to pcapng blocks (one stream written alone to its file).
"""

from esxcap.pcap.classic import (
    PcapHeader,
    PcapStreamReader,
    PcapWriter,
    encode_record,
    is_capture_start,
    parse_global_header,
    write_pcap_header,
)
from esxcap.pcap.merge import BlockWindow, CaptureFile, MergeResult, RecordSource, merge
from esxcap.pcap.ngreader import PcapngStreamReader
from esxcap.pcap.pcapng import DIRECTION_FLAGS, EPB_INBOUND, EPB_OUTBOUND, USERAPPL, PcapngWriter, encode_epb
from esxcap.pcap.records import (
    LINKTYPE_ETHERNET,
    MAX_CAPLEN,
    CaptureFormatError,
    CorruptCaptureError,
    Interface,
    InterfaceStatistics,
    NotPcapError,
    Record,
    Section,
)
from esxcap.pcap.transcode import EpbBatch, PcapngTranscoder, epb_records

__all__ = [
    "DIRECTION_FLAGS",
    "EPB_INBOUND",
    "EPB_OUTBOUND",
    "LINKTYPE_ETHERNET",
    "MAX_CAPLEN",
    "USERAPPL",
    "BlockWindow",
    "CaptureFile",
    "CaptureFormatError",
    "CorruptCaptureError",
    "EpbBatch",
    "Interface",
    "InterfaceStatistics",
    "MergeResult",
    "NotPcapError",
    "PcapHeader",
    "PcapStreamReader",
    "PcapWriter",
    "PcapngStreamReader",
    "PcapngTranscoder",
    "PcapngWriter",
    "Record",
    "RecordSource",
    "Section",
    "encode_epb",
    "encode_record",
    "epb_records",
    "is_capture_start",
    "merge",
    "parse_global_header",
    "write_pcap_header",
]
