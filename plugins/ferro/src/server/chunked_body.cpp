#include "server/chunked_body.hpp"

#include <algorithm>

#include "tunnelkit/hex.hpp"

namespace tunnelkit::ferro {

std::size_t ChunkedBodyEnd::Feed(std::string_view data) {
  std::size_t i = 0;
  auto fail = [this, &i] {
    state_ = State::kError;
    return i;
  };
  while (i < data.size()) {
    const char c = data[i];
    switch (state_) {
      case State::kSize:
        if (const int v = hex::DigitValue(c); v >= 0) {
          if (++digits_ > 15) return fail();
          size_ = size_ * 16 + static_cast<std::uint64_t>(v);
        } else if (digits_ == 0) {
          return fail();
        } else if (c == ';' || c == ' ' || c == '\t') {
          state_ = State::kExtension;
          line_ = 0;
        } else if (c == '\r') {
          state_ = State::kSizeLf;
        } else {
          return fail();
        }
        ++i;
        break;
      case State::kExtension:
        if (c == '\r') {
          state_ = State::kSizeLf;
        } else if (c == '\n' || ++line_ > kMaxLine) {
          return fail();
        }
        ++i;
        break;
      case State::kSizeLf:
        if (c != '\n') return fail();
        ++i;
        state_ = size_ == 0 ? State::kTrailerStart : State::kData;
        break;
      case State::kData: {
        const std::size_t n =
            static_cast<std::size_t>(std::min<std::uint64_t>(size_, data.size() - i));
        i += n;
        size_ -= n;
        if (size_ == 0) state_ = State::kDataCr;
        break;
      }
      case State::kDataCr:
        if (c != '\r') return fail();
        ++i;
        state_ = State::kDataLf;
        break;
      case State::kDataLf:
        if (c != '\n') return fail();
        ++i;
        state_ = State::kSize;
        digits_ = 0;
        break;
      case State::kTrailerStart:
        if (c == '\r') {
          ++i;
          state_ = State::kFinalLf;
        } else {
          if (++trailers_ > kMaxTrailers) return fail();
          state_ = State::kTrailer;
          line_ = 0;
        }
        break;
      case State::kTrailer:
        if (c == '\r') {
          state_ = State::kTrailerLf;
        } else if (c == '\n' || ++line_ > kMaxLine) {
          return fail();
        }
        ++i;
        break;
      case State::kTrailerLf:
        if (c != '\n') return fail();
        ++i;
        state_ = State::kTrailerStart;
        break;
      case State::kFinalLf:
        if (c != '\n') return fail();
        ++i;
        state_ = State::kDone;
        return i;
      case State::kDone:
      case State::kError:
        return i;
    }
  }
  return i;
}

}  // namespace tunnelkit::ferro
