// Reading and writing protocol frames on Boost.Asio streams (TCP or Unix sockets),
// with C++20 coroutines. A session owns one Outbox: a queue drained by its writer
// coroutine, woken by a timer, as in Asio's chat server example.
#pragma once

// Boost 1.74's awaitable.hpp uses std::exchange without including <utility>.
#include <utility>

#include <boost/asio.hpp>
#include <deque>
#include <memory>

#include "gang/protocol.hpp"

namespace dynamos::gang {

namespace asio = boost::asio;
using boost::system::error_code;

// Reads frames through one buffer: a burst of small messages costs one system call,
// and a header is checked (size limit) before its payload is waited for.
class FrameReader {
 public:
  static constexpr std::size_t kChunk = 64 * 1024;

  template <class Stream>
  asio::awaitable<Result<proto::Message>> next(Stream& s) {
    for (;;) {
      std::size_t have = end_ - start_;
      std::size_t need = proto::kHeaderSize;
      if (have >= proto::kHeaderSize) {
        auto h = proto::decode_header(std::span(buf_).subspan(start_, proto::kHeaderSize));
        if (!h) co_return std::unexpected(h.error());
        need += h->length;
        if (have >= need) {
          auto payload = std::span(buf_).subspan(start_ + proto::kHeaderSize, h->length);
          start_ += need;
          co_return proto::decode_payload(h->type, payload);
        }
      }
      // Make room for the whole frame (at most kHeaderSize + kMaxPayload).
      if (start_ > 0 && (buf_.size() - start_ < std::max(need, kChunk) || start_ == end_)) {
        std::copy(buf_.begin() + static_cast<std::ptrdiff_t>(start_),
                  buf_.begin() + static_cast<std::ptrdiff_t>(end_), buf_.begin());
        end_ -= start_;
        start_ = 0;
      }
      if (buf_.size() < std::max(need, kChunk)) buf_.resize(std::max(need, kChunk));
      error_code ec;
      std::size_t n =
          co_await s.async_read_some(asio::buffer(buf_.data() + end_, buf_.size() - end_),
                                     asio::redirect_error(asio::use_awaitable, ec));
      if (ec)
        co_return fail(ec == asio::error::eof ? Errc::state : Errc::system,
                       "read message: " + ec.message());
      end_ += n;
    }
  }

 private:
  std::vector<std::uint8_t> buf_;
  std::size_t start_ = 0, end_ = 0;
};

using Frame = std::shared_ptr<const std::vector<std::uint8_t>>;

inline Result<Frame> make_frame(const proto::Message& m) {
  auto bytes = proto::encode(m);
  if (!bytes) return std::unexpected(bytes.error());
  return std::make_shared<const std::vector<std::uint8_t>>(std::move(*bytes));
}

// The send queue of one session. push() never blocks; the writer coroutine sends
// frames in order and ends when the outbox is closed or a write fails.
class Outbox {
 public:
  explicit Outbox(const asio::any_io_executor& ex) : wake_(ex) {
    wake_.expires_at(asio::steady_timer::time_point::max());
  }
  void push(Frame f) {
    if (closed_) return;
    queue_.push_back(std::move(f));
    wake_.cancel_one();
  }
  void close() {
    closed_ = true;
    wake_.cancel();
  }
  // Sends what is queued, then ends the writer (used to deliver an error before closing).
  void finish() {
    finishing_ = true;
    wake_.cancel();
  }
  bool closed() const { return closed_; }

  template <class Stream>
  asio::awaitable<void> run(Stream& s) {
    while (!closed_) {
      if (queue_.empty()) {
        if (finishing_) break;
        error_code ec;
        co_await wake_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        continue;
      }
      // Gather what is queued into one write: one system call for a burst of frames.
      std::vector<asio::const_buffer> bufs;
      std::size_t n = std::min<std::size_t>(queue_.size(), 64);
      std::vector<Frame> hold(queue_.begin(), queue_.begin() + static_cast<std::ptrdiff_t>(n));
      for (auto& f : hold)
        bufs.push_back(asio::buffer(*f));
      error_code ec;
      co_await asio::async_write(s, bufs, asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        closed_ = true;
        break;
      }
      queue_.erase(queue_.begin(), queue_.begin() + static_cast<std::ptrdiff_t>(n));
    }
  }

 private:
  asio::steady_timer wake_;
  std::deque<Frame> queue_;
  bool closed_ = false;
  bool finishing_ = false;
};

// Nanoseconds of CLOCK_REALTIME, the clock switch deadlines are expressed in.
inline std::uint64_t realtime_ns() {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                        std::chrono::system_clock::now().time_since_epoch())
                                        .count());
}

}  // namespace dynamos::gang
