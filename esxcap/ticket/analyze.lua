-- esxcap analyze: what one tshark pass prints besides its protocol hierarchy (-z io,phs).
-- The first line says the script runs; then, as packets are read, one "P" line per packet that may be a
-- problem (TCP analysis flags, reset, SYN, DNS error, ICMP unreachable); at the end one "C" line per
-- TCP and UDP conversation (stream index, one end, the other) with its packets and bytes; every N packets
-- dissected (N: the script's argument, -X lua_script1:N) an "N" line with that count, flushed at once, for
-- progress. Fields are tab-separated; control characters in a value become "?". tshark numbers every record
-- of a file, esxcap's reader only its packets: an "S" line names each record that is no packet (a pcapng
-- custom block, a systemd journal entry...), so that the "P" lines after it can be matched to esxcap's
-- packets.
io.write("esxcap-analyze 1\n")
local progress_every = tonumber((...)) or 0

local function field(name) return Field.new(name) end
local stream, flags = field("tcp.stream"), field("tcp.flags")
local retransmission = field("tcp.analysis.retransmission")
local duplicate_ack = field("tcp.analysis.duplicate_ack")
local zero_window = field("tcp.analysis.zero_window")
local dns_flags, dns_name = field("dns.flags"), field("dns.qry.name")
local icmp_type, icmp_code = field("icmp.type"), field("icmp.code")
local icmpv6_type, icmpv6_code = field("icmpv6.type"), field("icmpv6.code")
local ip_src, ip_dst = field("ip.src"), field("ip.dst")
local ipv6_src, ipv6_dst = field("ipv6.src"), field("ipv6.dst")

local function text(info)
  if info == nil then return "" end
  return (tostring(info.value):gsub("%c", "?"))
end

local function present(info)
  if info == nil then return "" end
  return "1"
end

local skipped = Listener.new("frame", "!frame.encap_type")

function skipped.packet(pinfo)
  io.write("S\t", pinfo.number, "\n")
end

local problems = Listener.new("frame", "tcp.analysis.flags || tcp.flags.reset == 1 || tcp.flags.syn == 1"
  .. " || (dns.flags.response == 1 && dns.flags.rcode != 0) || icmp.type == 3 || icmpv6.type == 1")

function problems.packet(pinfo)
  local src, dst = ip_src(), ip_dst()
  if src == nil then src, dst = ipv6_src(), ipv6_dst() end
  io.write("P\t", pinfo.number, "\t", text(stream()), "\t", text(flags()), "\t",
    present(retransmission()), "\t", present(duplicate_ack()), "\t", present(zero_window()), "\t",
    text(dns_flags()), "\t", text(dns_name()), "\t", text(icmp_type()), "\t", text(icmp_code()), "\t",
    text(icmpv6_type()), "\t", text(icmpv6_code()), "\t", text(src), "\t", text(dst), "\n")
end

-- For TCP also whether the stream carried a packet that is neither a SYN nor a reset: a connection whose
-- handshake failed carries only those (the SYN-ACK may simply be outside a one-direction capture).
local function handshake_only(info)
  if info == nil then return false end
  local syn, rst = math.floor(info.value / 2) % 2, math.floor(info.value / 4) % 2
  return syn == 1 or rst == 1
end

local function conversations(proto, stream_of, flags_of)
  local seen = {}
  local tap = Listener.new(proto)
  function tap.packet(pinfo)
    -- by tshark's stream index too: a port pair reused by a later connection is another conversation,
    -- as in tshark's -z conv
    local key = text(stream_of()) .. "\t" .. tostring(pinfo.src) .. ":" .. pinfo.src_port .. "\t" .. tostring(pinfo.dst) .. ":" .. pinfo.dst_port
    local entry = seen[key]
    if entry == nil then
      entry = {0, 0, 0}
      seen[key] = entry
    end
    entry[1] = entry[1] + 1
    entry[2] = entry[2] + pinfo.len
    if flags_of ~= nil and not handshake_only(flags_of()) then entry[3] = 1 end
  end
  function tap.draw()
    for key, entry in pairs(seen) do
      io.write("C\t", proto, "\t", key, "\t", entry[1], "\t", entry[2], "\t", entry[3], "\n")
    end
  end
end

conversations("tcp", stream, flags)
conversations("udp", field("udp.stream"), nil)

if progress_every > 0 then
  local counter = Listener.new("frame")
  local dissected = 0
  function counter.packet()
    dissected = dissected + 1
    if dissected % progress_every == 0 then
      io.write("N\t", dissected, "\n")
      io.stdout:flush()
    end
  end
end
