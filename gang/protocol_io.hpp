// Reading and writing protocol frames on Boost.Asio streams (TCP or Unix sockets),
// with C++20 coroutines. A session owns one Outbox: a queue drained by its writer
// coroutine, woken by a timer, as in Asio's chat server example.
#pragma once

// Boost 1.74's awaitable.hpp uses std::exchange without including <utility>.
#include <utility>

#include <sys/socket.h>

#include <boost/asio.hpp>
#include <deque>
#include <memory>
#include <optional>

#include "gang/auth.hpp"
#include "gang/protocol.hpp"

namespace dynamos::gang {

namespace asio = boost::asio;
using boost::system::error_code;

// Reads frames through one buffer: a burst of small messages costs one system call,
// and a header is checked (size limit) before its payload is waited for. Once
// authenticate() is called, every frame must be followed by its tag (gang/auth.hpp),
// checked before the payload is decoded; a frame that fails is an Errc::protocol error
// and the session must end (the sequence is then out of step for good).
// The buffer starts at kChunk and grows to the largest frame met: gangd holds a reader
// a node, and 64 KiB each (zeroed, so resident) came to 640 MB with 10,000 nodes.
class FrameReader {
 public:
  static constexpr std::size_t kChunk = 4 * 1024;

  void authenticate(FrameMac in) { mac_.emplace(std::move(in)); }
  bool authenticated() const { return mac_.has_value(); }

  template <class Stream>
  asio::awaitable<Result<proto::Message>> next(Stream& s) {
    for (;;) {
      std::size_t have = end_ - start_;
      std::size_t need = proto::kHeaderSize;
      if (have >= proto::kHeaderSize) {
        auto h = proto::decode_header(std::span(buf_).subspan(start_, proto::kHeaderSize));
        if (!h) co_return std::unexpected(h.error());
        need += h->length + (mac_ ? proto::kMacSize : 0);
        if (have >= need) {
          auto frame = std::span(buf_).subspan(start_, proto::kHeaderSize + h->length);
          start_ += need;
          if (mac_ && !mac_->check(frame, std::span(buf_).subspan(start_ - proto::kMacSize,
                                                                  proto::kMacSize)))
            co_return rejected(h->type);
          co_return proto::decode_payload(h->type, frame.subspan(proto::kHeaderSize));
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
  Result<proto::Message> rejected(proto::MsgType type) const {
    return fail(Errc::protocol, std::string(proto::msg_type_name(type)) + " frame " +
                                    std::to_string(mac_->sequence()) +
                                    " failed authentication (forged, replayed or reordered)");
  }

  std::vector<std::uint8_t> buf_;
  std::size_t start_ = 0, end_ = 0;
  std::optional<FrameMac> mac_;
};

using Frame = std::shared_ptr<const std::vector<std::uint8_t>>;

inline Result<Frame> make_frame(const proto::Message& m) {
  auto bytes = proto::encode(m);
  if (!bytes) return std::unexpected(bytes.error());
  return std::make_shared<const std::vector<std::uint8_t>>(std::move(*bytes));
}

// The send queue of one session. push() never blocks; the writer coroutine sends
// frames in order and ends when the outbox is closed or a write fails. Once seal() is
// called every frame pushed is followed by its tag (gang/auth.hpp); one frame can be
// shared by many outboxes, each tags it with its own session key.
//
// With write_through(fd), push() sends at once when nothing is queued or being written:
// one non-blocking system call and no wake-up of the writer, which then only carries
// what the socket did not take. gangd sends a round's frames to every agent this way.
class Outbox {
 public:
  explicit Outbox(const asio::any_io_executor& ex) : wake_(ex) {
    wake_.expires_at(asio::steady_timer::time_point::max());
  }
  void seal(FrameMac out) { mac_.emplace(std::move(out)); }
  void write_through(int fd) { fd_ = fd; }
  void push(Frame f) {
    if (closed_) return;
    ++pushed_;
    Entry e{std::move(f), {}, 0};
    if (mac_) e.tag = mac_->seal(*e.frame);
    if (fd_ >= 0 && queue_.empty() && !writing_ && !finishing_) {
      e.sent = send_now(e);
      if (e.sent == e.frame->size() + tag_size()) return;
    }
    queue_.push_back(std::move(e));
    // A writer already awake (or about to gather) needs no second wake-up.
    if (!woken_) {
      woken_ = true;
      wake_.cancel_one();
    }
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
  // Called at every heartbeat tick: pushes `heartbeat` only when nothing was pushed since
  // the last tick (any frame tells the peer this side is alive). The heartbeat itself
  // is not news for the next tick.
  void push_heartbeat(Frame heartbeat) {
    if (pushed_ == pushed_at_heartbeat_) push(std::move(heartbeat));
    pushed_at_heartbeat_ = pushed_;
  }

  template <class Stream>
  asio::awaitable<void> run(Stream& s) {
    std::vector<asio::const_buffer> bufs;
    while (!closed_) {
      if (queue_.empty()) {
        if (finishing_) break;
        woken_ = false;
        error_code ec;
        co_await wake_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        continue;
      }
      // Gather what is queued into one write: one system call for a burst of frames.
      // Frames pushed meanwhile go to the back; the front ones stay put until written.
      bufs.clear();
      std::size_t n = std::min<std::size_t>(queue_.size(), 32);
      for (std::size_t i = 0; i < n; ++i) {
        const Entry& e = queue_[i];
        std::size_t skip = e.sent, size = e.frame->size();
        if (skip < size) bufs.push_back(asio::buffer(*e.frame) + skip);
        if (mac_) bufs.push_back(asio::buffer(e.tag) + (skip > size ? skip - size : 0));
      }
      error_code ec;
      writing_ = true;
      co_await asio::async_write(s, bufs, asio::redirect_error(asio::use_awaitable, ec));
      writing_ = false;
      if (ec) {
        closed_ = true;
        break;
      }
      queue_.erase(queue_.begin(), queue_.begin() + static_cast<std::ptrdiff_t>(n));
    }
  }

 private:
  struct Entry {
    Frame frame;
    proto::Mac tag;
    std::size_t sent;  // bytes (frame, then tag) that push() already wrote
  };
  std::size_t tag_size() const { return mac_ ? proto::kMacSize : 0; }
  // Bytes of `e` the socket took at once (0 on EAGAIN or an error the writer will meet).
  std::size_t send_now(Entry& e) {
    iovec iov[2] = {{const_cast<std::uint8_t*>(e.frame->data()), e.frame->size()},
                    {e.tag.data(), tag_size()}};
    msghdr mh{};
    mh.msg_iov = iov;
    mh.msg_iovlen = mac_ ? 2 : 1;
    ssize_t n = ::sendmsg(fd_, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
    return n > 0 ? static_cast<std::size_t>(n) : 0;
  }

  asio::steady_timer wake_;
  std::deque<Entry> queue_;
  std::optional<FrameMac> mac_;
  int fd_ = -1;
  bool closed_ = false;
  bool finishing_ = false;
  bool woken_ = false;
  bool writing_ = false;
  std::uint64_t pushed_ = 0, pushed_at_heartbeat_ = 0;
};

// Nanoseconds of CLOCK_REALTIME, the clock switch deadlines are expressed in.
inline std::uint64_t realtime_ns() {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                        std::chrono::system_clock::now().time_since_epoch())
                                        .count());
}

}  // namespace dynamos::gang
