#include "tunnelkit/cloudflare/wire/dns/dns_codec.hpp"

#include <stdexcept>

namespace tunnelkit::cloudflare::dns {

namespace {

std::uint16_t Read16(std::span<const std::uint8_t> m, std::size_t at) {
  return static_cast<std::uint16_t>((m[at] << 8) | m[at + 1]);
}

void Put16(std::vector<std::uint8_t>& out, std::uint16_t v) {
  out.push_back(static_cast<std::uint8_t>(v >> 8));
  out.push_back(static_cast<std::uint8_t>(v & 0xff));
}

}  // namespace

std::string RcodeName(std::uint8_t rcode) {
  switch (rcode) {
    case 0:
      return "NOERROR";
    case 1:
      return "FORMERR";
    case 2:
      return "SERVFAIL";
    case 3:
      return "NXDOMAIN";
    case 4:
      return "NOTIMP";
    case 5:
      return "REFUSED";
    default:
      return "rcode " + std::to_string(rcode);
  }
}

std::vector<std::uint8_t> EncodeQuery(std::uint16_t id, const std::string& name, RecordType type) {
  std::vector<std::uint8_t> out;
  Put16(out, id);
  Put16(out, 0x0100);  // standard query, RD
  Put16(out, 1);       // QDCOUNT
  Put16(out, 0);
  Put16(out, 0);
  Put16(out, 0);
  std::string dotted = name;
  if (!dotted.empty() && dotted.back() == '.') dotted.pop_back();
  if (dotted.empty()) throw std::invalid_argument("DNS name is empty");
  std::size_t wire = 1;
  std::size_t start = 0;
  while (start <= dotted.size()) {
    std::size_t dot = dotted.find('.', start);
    if (dot == std::string::npos) dot = dotted.size();
    std::size_t len = dot - start;
    if (len == 0) throw std::invalid_argument("DNS name '" + name + "' has an empty label");
    if (len > kMaxLabelLength)
      throw std::invalid_argument("DNS name '" + name + "' has a label over 63 bytes");
    wire += len + 1;
    if (wire > kMaxNameLength)
      throw std::invalid_argument("DNS name '" + name + "' is over 255 bytes");
    out.push_back(static_cast<std::uint8_t>(len));
    out.insert(out.end(), dotted.begin() + static_cast<std::ptrdiff_t>(start),
               dotted.begin() + static_cast<std::ptrdiff_t>(dot));
    start = dot + 1;
  }
  out.push_back(0);
  Put16(out, static_cast<std::uint16_t>(type));
  Put16(out, 1);  // IN
  return out;
}

Result<Name> ReadName(std::span<const std::uint8_t> m, std::size_t offset) {
  std::string name;
  std::size_t next = 0;
  std::size_t pos = offset;
  std::size_t wire = 1;
  int hops = 0;
  bool jumped = false;
  // Pointers must go strictly backwards from the label that holds them, so a name cannot loop.
  std::size_t limit = offset;
  while (true) {
    if (pos >= m.size()) {
      return Error::Invalid("truncated name at offset " + std::to_string(pos));
    }
    std::uint8_t len = m[pos];
    if ((len & 0xc0) == 0xc0) {
      if (pos + 1 >= m.size()) {
        return Error::Invalid("truncated compression pointer at offset " + std::to_string(pos));
      }
      std::size_t target = static_cast<std::size_t>(Read16(m, pos) & 0x3fff);
      if (target >= limit || target >= pos) {
        return Error::Invalid("compression pointer at offset " + std::to_string(pos) +
                              " does not point backwards");
      }
      if (++hops > kMaxPointerHops) {
        return Error::TooLarge("too many compression pointers in name at offset " +
                               std::to_string(offset));
      }
      if (!jumped) next = pos + 2;
      jumped = true;
      limit = target;
      pos = target;
      continue;
    }
    if ((len & 0xc0) != 0) {
      return Error::Invalid("unsupported label type at offset " + std::to_string(pos));
    }
    if (len == 0) {
      if (!jumped) next = pos + 1;
      return Name{std::move(name), next};
    }
    if (pos + 1 + len > m.size()) {
      return Error::Invalid("truncated label at offset " + std::to_string(pos));
    }
    wire += len + 1u;
    if (wire > kMaxNameLength) {
      return Error::TooLarge("name at offset " + std::to_string(offset) + " is over 255 bytes");
    }
    if (!name.empty()) name += '.';
    name.append(reinterpret_cast<const char*>(m.data() + pos + 1), len);
    pos += 1u + len;
  }
}

Result<Response> DecodeResponse(std::span<const std::uint8_t> m, std::uint16_t expected_id) {
  auto fail = [](std::string why) { return Error::Invalid("bad DNS response: " + why); };
  auto over_limit = [](std::string why) { return Error::TooLarge("bad DNS response: " + why); };
  if (m.size() > kMaxMessageSize) return over_limit("message over 65535 bytes");
  if (m.size() < 12) return fail("truncated header (" + std::to_string(m.size()) + " bytes)");
  Response r;
  r.id = Read16(m, 0);
  std::uint16_t flags = Read16(m, 2);
  if ((flags & 0x8000) == 0) return fail("QR bit clear (not a response)");
  if (r.id != expected_id)
    return fail("id " + std::to_string(r.id) + " does not match query id " +
                std::to_string(expected_id));
  r.truncated = (flags & 0x0200) != 0;
  r.rcode = static_cast<std::uint8_t>(flags & 0x000f);
  std::size_t qdcount = Read16(m, 4);
  std::size_t ancount = Read16(m, 6);
  if (qdcount > kMaxQuestions) return over_limit(std::to_string(qdcount) + " questions (limit 4)");
  if (ancount > kMaxRecordsPerSection)
    return over_limit(std::to_string(ancount) + " answers (limit 512)");
  if (r.rcode != 0) return Error::NotFound("DNS server answered " + RcodeName(r.rcode));
  std::size_t pos = 12;
  for (std::size_t i = 0; i < qdcount; ++i) {
    auto question = ReadName(m, pos);
    if (!question) return question.error().Prefixed("bad DNS response: ");
    std::size_t next = question->next;
    if (next + 4 > m.size()) return fail("truncated question");
    pos = next + 4;
  }
  for (std::size_t i = 0; i < ancount; ++i) {
    auto owner = ReadName(m, pos);
    if (!owner) return owner.error().Prefixed("bad DNS response: ");
    std::size_t next = owner->next;
    if (next + 10 > m.size())
      return fail("truncated record header at offset " + std::to_string(next));
    std::uint16_t type = Read16(m, next);
    std::uint16_t klass = Read16(m, next + 2);
    std::size_t rdlength = Read16(m, next + 8);
    std::size_t rdata = next + 10;
    if (rdata + rdlength > m.size())
      return fail("record data at offset " + std::to_string(rdata) + " runs past the message");
    pos = rdata + rdlength;
    if (klass != 1) continue;
    if (type == static_cast<std::uint16_t>(RecordType::kA)) {
      if (rdlength != 4) return fail("A record with " + std::to_string(rdlength) + " bytes");
      std::array<std::uint8_t, 4> a{};
      for (std::size_t k = 0; k < 4; ++k) a[k] = m[rdata + k];
      r.a.push_back(a);
    } else if (type == static_cast<std::uint16_t>(RecordType::kAaaa)) {
      if (rdlength != 16) return fail("AAAA record with " + std::to_string(rdlength) + " bytes");
      std::array<std::uint8_t, 16> a{};
      for (std::size_t k = 0; k < 16; ++k) a[k] = m[rdata + k];
      r.aaaa.push_back(a);
    } else if (type == static_cast<std::uint16_t>(RecordType::kSrv)) {
      if (rdlength < 7) return fail("SRV record with " + std::to_string(rdlength) + " bytes");
      SrvRecord srv;
      srv.priority = Read16(m, rdata);
      srv.weight = Read16(m, rdata + 2);
      srv.port = Read16(m, rdata + 4);
      // The target must lie inside this record's data (pointers may still reach back).
      auto target = ReadName(m.first(rdata + rdlength), rdata + 6);
      if (!target) return target.error().Prefixed("bad DNS response: SRV target: ");
      if (target->next != rdata + rdlength) return fail("SRV record has trailing bytes");
      srv.target = std::move(target->text);
      r.srv.push_back(std::move(srv));
    }
  }
  return r;
}

}  // namespace tunnelkit::cloudflare::dns
