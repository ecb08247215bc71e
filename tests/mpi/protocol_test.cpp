// The workload library in process: sizes, the result line, the progress file.
#include <gtest/gtest.h>

#include <filesystem>

#include "bench/workload/progress.hpp"
#include "bench/workload/result_line.hpp"
#include "bench/workload/size.hpp"
#include "tests/mpi/command.hpp"

using namespace dynamos;
using namespace dynamos::workload;

TEST(Size, ParsesSuffixesAndRejectsNonsense) {
  EXPECT_EQ(parse_size("256M").value_or(0), 256ull << 20);
  EXPECT_EQ(parse_size("1.5G").value_or(0), 3ull << 29);
  EXPECT_EQ(parse_size("64KiB").value_or(0), 64ull << 10);
  EXPECT_EQ(parse_size("4096").value_or(0), 4096u);
  EXPECT_FALSE(parse_size("lots").has_value());
  EXPECT_FALSE(parse_size("12Q").has_value());
  EXPECT_FALSE(parse_size("-1M").has_value());
  EXPECT_EQ(format_size(256ull << 20), "256 MiB");
}

TEST(ResultLine, RoundTripsThroughTheParser) {
  ResultLine r;
  r.add("workload", "cg").add("ranks", 2).add("rate", 1.5e9).add("verified", true);
  r.add("note", "a \"quoted\" word").add("nan", 0.0 / 0.0);
  std::string out = "cg: progress\n" + r.str() + "\ntrailing\n";
  auto f = find_result_line(out);
  ASSERT_TRUE(f.has_value()) << f.error().message();
  EXPECT_EQ(f->text("workload").value_or(""), "cg");
  EXPECT_EQ(f->number("ranks").value_or(0), 2);
  EXPECT_EQ(f->number("rate").value_or(0), 1.5e9);
  EXPECT_EQ(f->boolean("verified").value_or(false), true);
  EXPECT_EQ(f->text("note").value_or(""), "a \"quoted\" word");
  EXPECT_EQ(f->text("nan").value_or(""), "null");
  EXPECT_FALSE(f->number("missing").has_value());
  EXPECT_FALSE(find_result_line("no result here\n").has_value());
  EXPECT_FALSE(parse_result_line("RESULT {\"a\":}").has_value());
}

TEST(Progress, ReaderSeesWriterCountsFromItsFirstInit) {
  dynamos::test::TempDir dir;
  std::string path = dir.path() + "/p";
  auto missing = ProgressReader::open(path);
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code, Errc::not_found) << missing.error().message();

  auto w = ProgressWriter::create(path, "stencil", "points", 3);
  ASSERT_TRUE(w.has_value()) << w.error().message();
  auto r = ProgressReader::open(path);
  ASSERT_TRUE(r.has_value()) << r.error().message();
  auto s0 = r->sample();
  ASSERT_TRUE(s0.has_value()) << s0.error().message();
  EXPECT_EQ(s0->work, 0u);
  EXPECT_EQ(s0->state, ProgressState::starting);
  EXPECT_EQ(s0->rank, 3);
  EXPECT_EQ(r->workload(), "stencil");
  EXPECT_EQ(r->unit(), "points");

  w->set_state(ProgressState::running);
  w->add(1000);
  w->iteration_done();
  auto s1 = r->sample();
  ASSERT_TRUE(s1.has_value());
  EXPECT_EQ(s1->work, 1000u);
  EXPECT_EQ(s1->iterations, 1u);
  EXPECT_EQ(s1->state, ProgressState::running);
  EXPECT_GE(s1->updated_ns, s0->updated_ns);
  EXPECT_GT(progress_rate(*s0, *s1), 0.0);

  // A rerun reuses the file: an old reader sees the counters start again.
  auto w2 = ProgressWriter::create(path, "cg", "nonzeros");
  ASSERT_TRUE(w2.has_value());
  auto s2 = r->sample();
  ASSERT_TRUE(s2.has_value());
  EXPECT_EQ(s2->work, 0u);
  EXPECT_EQ(r->workload(), "cg");

  ProgressWriter none;  // no --progress-file: every call is a no-op
  none.add(5);
  none.set_state(ProgressState::done);
  EXPECT_FALSE(none.active());
}
