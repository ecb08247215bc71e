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

// Reads one frame. A closed or failed connection is Errc::system with the Asio message;
// malformed input is the decoder's Errc::protocol. `buf` is reused between calls.
template <class Stream>
asio::awaitable<Result<proto::Message>> read_message(Stream& s, std::vector<std::uint8_t>& buf) {
  std::array<std::uint8_t, proto::kHeaderSize> hdr;
  error_code ec;
  co_await asio::async_read(s, asio::buffer(hdr), asio::redirect_error(asio::use_awaitable, ec));
  if (ec)
    co_return fail(ec == asio::error::eof ? Errc::state : Errc::system,
                   "read message: " + ec.message());
  auto h = proto::decode_header(hdr);
  if (!h) co_return std::unexpected(h.error());
  buf.resize(h->length);
  co_await asio::async_read(s, asio::buffer(buf), asio::redirect_error(asio::use_awaitable, ec));
  if (ec)
    co_return fail(Errc::system, std::string("read ") + proto::msg_type_name(h->type) +
                                     " message: " + ec.message());
  co_return proto::decode_payload(h->type, buf);
}

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
