// Where a chunked request body ends (RFC 9112 section 7.1), found while its bytes pass
// through to the tunnel: the server forwards the body as it is and keeps none of it, but must
// know when the request is complete (its idle timeout ends there and the response timeout
// begins). Pure code; bounded state (a size of at most 15 hex digits, extension and trailer
// lines of at most kMaxLine bytes, at most kMaxTrailers trailer lines).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace tunnelkit::ferro {

class ChunkedBodyEnd {
 public:
  static constexpr std::size_t kMaxLine = 4096;
  static constexpr std::size_t kMaxTrailers = 64;

  // Takes the next bytes of the body: returns how many of them belong to it (all of them
  // unless the body ends, or turns out malformed, within `data`).
  std::size_t Feed(std::string_view data);
  bool done() const { return state_ == State::kDone; }
  bool failed() const { return state_ == State::kError; }

 private:
  enum class State {
    kSize,
    kExtension,
    kSizeLf,
    kData,
    kDataCr,
    kDataLf,
    kTrailerStart,
    kTrailer,
    kTrailerLf,
    kFinalLf,
    kDone,
    kError,
  };
  State state_ = State::kSize;
  std::uint64_t size_ = 0;
  std::size_t digits_ = 0;
  std::size_t line_ = 0;
  std::size_t trailers_ = 0;
};

}  // namespace tunnelkit::ferro
