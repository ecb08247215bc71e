// Parsers of the kernel's text files, on captured samples, and file helpers on a temporary
// directory: no root, no kernel state.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>

#include "kernelside/cgroup.hpp"
#include "kernelside/fs.hpp"
#include "kernelside/memory.hpp"
#include "kernelside/pressure.hpp"
#include "kernelside/procfs.hpp"
#include "kernelside/topology.hpp"

namespace ks = dynamos::kernelside;

// This machine's hybrid layout (abridged), plus a pure v2 host.
constexpr const char* kHybridMountinfo =
    "25 1 0:23 / /sys rw,nosuid - sysfs sysfs rw\n"
    "30 25 0:26 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
    "31 30 0:27 / /sys/fs/cgroup/cpu rw,relatime shared:9 - cgroup cgroup rw,cpu\n"
    "32 30 0:28 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct\n"
    "33 30 0:29 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset\n"
    "34 30 0:30 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
    "35 30 0:31 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer\n"
    "36 30 0:32 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd\n"
    "37 30 0:33 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";

TEST(KernelsideCgroupLayout, HybridServesV1ControllersFromV1AndKeepsV2ForCoreFeatures) {
  auto layout = ks::Layout::parse(kHybridMountinfo, "");
  ASSERT_TRUE(layout) << layout.error().message();
  EXPECT_EQ(layout->kind(), ks::Layout::Kind::hybrid);
  EXPECT_EQ(layout->serving(ks::Controller::memory), ks::CgroupVersion::v1);
  EXPECT_EQ(layout->root_of(ks::Controller::memory), "/sys/fs/cgroup/memory");
  EXPECT_EQ(layout->root_of(ks::Controller::cpuacct), "/sys/fs/cgroup/cpuacct");
  EXPECT_EQ(layout->serving(ks::Controller::pids), std::nullopt)
      << "pids is mounted nowhere in the sample";
  EXPECT_EQ(layout->v2_root(), "/sys/fs/cgroup/unified");
  auto v2 = layout->prefer_v2({ks::Controller::freezer, ks::Controller::memory});
  EXPECT_EQ(v2.serving(ks::Controller::freezer), ks::CgroupVersion::v2)
      << "cgroup.freeze is core v2";
  EXPECT_EQ(v2.serving(ks::Controller::memory), ks::CgroupVersion::v1)
      << "v2 root offers no memory controller";
}

TEST(KernelsideCgroupLayout, PureV2WithControllers) {
  auto layout =
      ks::Layout::parse("29 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n",
                        "cpuset cpu io memory hugetlb pids rdma misc\n");
  ASSERT_TRUE(layout) << layout.error().message();
  EXPECT_EQ(layout->kind(), ks::Layout::Kind::v2);
  for (auto c : {ks::Controller::cpu, ks::Controller::cpuset, ks::Controller::memory,
                 ks::Controller::freezer, ks::Controller::cpuacct, ks::Controller::pids})
    EXPECT_EQ(layout->serving(c), ks::CgroupVersion::v2) << ks::controller_name(c);
}

TEST(KernelsideCgroupLayout, EscapedMountPointAndCoMountedControllers) {
  auto layout =
      ks::Layout::parse("40 30 0:40 / /cg/cpu\\040acct rw - cgroup cgroup rw,cpu,cpuacct\n", "");
  ASSERT_TRUE(layout) << layout.error().message();
  EXPECT_EQ(layout->root_of(ks::Controller::cpu), "/cg/cpu acct");
  EXPECT_EQ(layout->root_of(ks::Controller::cpuacct), "/cg/cpu acct");
  EXPECT_FALSE(ks::Layout::parse("25 1 0:23 / /sys rw - sysfs sysfs rw\n", ""))
      << "no cgroup at all";
}

TEST(KernelsideFs, NumbersAndKeyedFiles) {
  EXPECT_EQ(ks::parse_u64(" 42\n").value(), 42u);
  EXPECT_EQ(ks::parse_u64("max").value(), UINT64_MAX);
  EXPECT_FALSE(ks::parse_u64("12abc"));
  EXPECT_FALSE(ks::parse_u64(""));
  auto kv = ks::parse_flat_keyed("anon 4096\nfile 8192\npgmajfault 3\n");
  ASSERT_TRUE(kv);
  EXPECT_EQ(kv->at("anon"), 4096u);
  EXPECT_EQ(kv->at("pgmajfault"), 3u);
  auto bad = ks::parse_flat_keyed("anon four\n");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().what.find("anon four"), std::string::npos) << "the error names the line";
  auto mi = ks::parse_colon_keyed("MemTotal:       24684068 kB\nHugePages_Total:       0\n");
  ASSERT_TRUE(mi);
  EXPECT_EQ(mi->at("MemTotal"), 24684068ull * 1024);
  EXPECT_EQ(mi->at("HugePages_Total"), 0u);
}

TEST(KernelsideFs, SubdirectoriesOnly) {
  char tmpl[] = "/tmp/dynamos-subdirs-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  std::string dir = tmpl;
  ASSERT_EQ(::mkdir((dir + "/b").c_str(), 0700), 0);
  ASSERT_EQ(::mkdir((dir + "/a").c_str(), 0700), 0);
  std::ofstream(dir + "/file") << "x";
  ASSERT_EQ(::symlink("a", (dir + "/link").c_str()), 0);
  auto subdirs = ks::list_subdirs(dir);
  ASSERT_TRUE(subdirs) << subdirs.error().message();
  std::sort(subdirs->begin(), subdirs->end());
  EXPECT_EQ(*subdirs, (std::vector<std::string>{"a", "b"})) << "no files, no symlinks";
  EXPECT_FALSE(ks::list_subdirs(dir + "/file")) << "not a directory";
  for (const char* n : {"/a", "/b", "/file", "/link"})
    ::remove((dir + n).c_str());
  ::rmdir(dir.c_str());
}

TEST(KernelsidePressure, ParsesSomeAndFull) {
  auto p = ks::parse_pressure(
      "some avg10=0.36 avg60=0.15 avg300=0.42 total=3572445\n"
      "full avg10=1.00 avg60=0.00 avg300=0.00 total=7\n");
  ASSERT_TRUE(p) << p.error().message();
  EXPECT_DOUBLE_EQ(p->some.avg10, 0.36);
  EXPECT_EQ(p->some.total_us, 3572445u);
  ASSERT_TRUE(p->full);
  EXPECT_EQ(p->full->total_us, 7u);
  auto only_some = ks::parse_pressure("some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n");
  ASSERT_TRUE(only_some);
  EXPECT_FALSE(only_some->full);
  EXPECT_FALSE(ks::parse_pressure("some avg10=x avg60=0 avg300=0 total=0\n"));
  EXPECT_FALSE(ks::parse_pressure("some avg10=0.00 total=0\n")) << "incomplete line";
  EXPECT_FALSE(ks::parse_pressure(""));
}

TEST(KernelsideProcfs, Maps) {
  auto maps = ks::parse_maps(
      "55d0c0a00000-55d0c0a21000 rw-p 00000000 00:00 0                          [heap]\n"
      "7f1c00000000-7f1c10000000 rw-p 00000000 00:00 0 \n"
      "7f1c2a000000-7f1c2a1c5000 r-xp 00026000 fe:01 1311 /usr/lib/x86_64-linux-gnu/libc.so.6\n"
      "7f1c2b000000-7f1c2b001000 rw-s 00000000 00:01 4242 /dev/zero (deleted)\n"
      "7ffd5d3c0000-7ffd5d3e1000 rw-p 00000000 00:00 0                          [stack]\n"
      "7ffd5d3f0000-7ffd5d3f2000 r-xp 00000000 00:00 0                          [vdso]\n");
  ASSERT_TRUE(maps) << maps.error().message();
  ASSERT_EQ(maps->size(), 6u);
  EXPECT_EQ((*maps)[0].path, "[heap]");
  EXPECT_TRUE((*maps)[0].anonymous());
  EXPECT_TRUE((*maps)[1].anonymous());
  EXPECT_EQ((*maps)[1].size(), 0x10000000u);
  EXPECT_FALSE((*maps)[2].anonymous());
  EXPECT_TRUE((*maps)[2].exec);
  EXPECT_EQ((*maps)[2].offset, 0x26000u);
  EXPECT_EQ((*maps)[3].path, "/dev/zero (deleted)") << "paths keep their blanks";
  EXPECT_FALSE((*maps)[3].anonymous()) << "shared memory is not paged out to swap by PAGEOUT";
  EXPECT_TRUE((*maps)[5].special());
  auto ranges = ks::anonymous_ranges(*maps);
  ASSERT_EQ(ranges.size(), 3u) << "heap, the anonymous mapping and the stack; not vdso";
  EXPECT_EQ(ranges[1], (ks::Range{0x7f1c00000000, 0x10000000}));
  EXPECT_FALSE(ks::parse_maps("not a maps line\n"));
}

TEST(KernelsideProcfs, Smaps) {
  auto entries = ks::parse_smaps(
      "7f1c00000000-7f1c10000000 rw-p 00000000 00:00 0 \n"
      "Size:             262144 kB\n"
      "Rss:              131072 kB\n"
      "Anonymous:        131072 kB\n"
      "Swap:              65536 kB\n"
      "THPeligible:    0\n"
      "VmFlags: rd wr mr mw me ac sd lo\n"
      "7ffd5d3c0000-7ffd5d3e1000 rw-p 00000000 00:00 0                          [stack]\n"
      "Rss:                 132 kB\n"
      "VmFlags: rd wr mr mw me gd ac\n");
  ASSERT_TRUE(entries) << entries.error().message();
  ASSERT_EQ(entries->size(), 2u);
  EXPECT_EQ((*entries)[0].get("Rss"), 131072ull * 1024);
  EXPECT_EQ((*entries)[0].get("Swap"), 65536ull * 1024);
  EXPECT_TRUE((*entries)[0].locked());
  EXPECT_FALSE((*entries)[1].locked());
  EXPECT_EQ((*entries)[1].mapping.path, "[stack]");
}

TEST(KernelsideProcfs, StatWithAwkwardComm) {
  std::string line =
      "4242 (a (weird) name) S 1 4242 4242 0 -1 4194560 1500 0 27 0 250 30 0 0 20 0 3 0 123456 "
      "270336000 65536 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 "
      "0\n";
  auto s = ks::parse_stat(line);
  ASSERT_TRUE(s) << s.error().message();
  EXPECT_EQ(s->pid, 4242);
  EXPECT_EQ(s->comm, "a (weird) name");
  EXPECT_EQ(s->state, 'S');
  EXPECT_EQ(s->minflt, 1500u);
  EXPECT_EQ(s->majflt, 27u);
  EXPECT_EQ(s->num_threads, 3u);
  EXPECT_EQ(s->rss_pages, 65536u);
  EXPECT_EQ(s->processor, 1);
  long hz = sysconf(_SC_CLK_TCK);
  EXPECT_EQ(s->utime, std::chrono::nanoseconds(250ll * 1000000000 / hz));
  EXPECT_FALSE(ks::parse_stat("4242 (short) S 1 2 3\n"));
}

TEST(KernelsideProcfs, Schedstat) {
  auto s = ks::parse_schedstat("123456789 4242 17\n");
  ASSERT_TRUE(s) << s.error().message();
  EXPECT_EQ(s->on_cpu, std::chrono::nanoseconds(123456789));
  EXPECT_EQ(s->waiting, std::chrono::nanoseconds(4242));
  EXPECT_EQ(s->timeslices, 17u);
  EXPECT_FALSE(ks::parse_schedstat("1 2\n"));
}

TEST(KernelsideProcfs, SystemCpuAndSwaps) {
  auto c = ks::parse_system_cpu("cpu  100 5 50 1000 10 1 2 3 0 0\ncpu0 50 2 25 500 5 0 1 1 0 0\n");
  ASSERT_TRUE(c) << c.error().message();
  long hz = sysconf(_SC_CLK_TCK);
  EXPECT_EQ(c->busy(), std::chrono::nanoseconds((100 + 5 + 50 + 1 + 2 + 3) * (1000000000 / hz)));
  auto swaps = ks::parse_swaps(
      "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"
      "/dev/zram0                              partition\t2097148\t\t1024\t\t100\n");
  ASSERT_TRUE(swaps) << swaps.error().message();
  ASSERT_EQ(swaps->size(), 1u);
  EXPECT_EQ((*swaps)[0].path, "/dev/zram0");
  EXPECT_EQ((*swaps)[0].size_bytes, 2097148ull * 1024);
  EXPECT_EQ((*swaps)[0].priority, 100);
  EXPECT_TRUE(ks::parse_swaps("Filename Type Size Used Priority\n")->empty());
}

TEST(KernelsideMemory, PagemapRunsAndByteBudgets) {
  const size_t page = ks::page_size();
  std::vector<ks::PageEntry> e(6);
  e[0].raw = uint64_t{1} << 63;  // present
  e[1].raw = uint64_t{1} << 63;
  e[2].raw = uint64_t{1} << 62;  // swapped
  e[3].raw = uint64_t{1} << 63;
  e[5].raw = (uint64_t{1} << 62) | (uint64_t{1} << 55);
  EXPECT_TRUE(e[5].soft_dirty());
  uintptr_t base = 0x10000 * page;
  auto present = ks::runs_of(
      base, e, +[](ks::PageEntry x) { return x.present(); });
  ASSERT_EQ(present.size(), 2u);
  EXPECT_EQ(present[0], (ks::Range{base, 2 * page}));
  EXPECT_EQ(present[1], (ks::Range{base + 3 * page, page}));
  auto swapped = ks::runs_of(
      base, e, +[](ks::PageEntry x) { return x.swapped(); });
  ASSERT_EQ(swapped.size(), 2u);
  std::vector<ks::Range> ranges{{base, 4 * page}, {base + 10 * page, 4 * page}};
  auto cut = ks::take_bytes(ranges, 5 * page);
  ASSERT_EQ(cut.size(), 2u);
  EXPECT_EQ(cut[1].length, page);
  EXPECT_EQ(ks::total_bytes(cut), 5 * page);
}

TEST(KernelsideTopology, CpuLists) {
  EXPECT_EQ(ks::parse_cpu_list("0-3,6").value(), (std::vector<unsigned>{0, 1, 2, 3, 6}));
  EXPECT_EQ(ks::parse_cpu_list("5\n").value(), (std::vector<unsigned>{5}));
  EXPECT_TRUE(ks::parse_cpu_list("").value().empty());
  EXPECT_FALSE(ks::parse_cpu_list("3-1"));
  EXPECT_FALSE(ks::parse_cpu_list("a"));
  EXPECT_FALSE(ks::parse_cpu_list("1,"));
  EXPECT_EQ(ks::format_cpu_list({6, 0, 1, 2, 3, 8, 9}), "0-3,6,8-9");
  ks::Topology t;
  for (unsigned i = 0; i < 5; ++i)
    t.cores.push_back({i, {i}, 0});
  auto parts = t.split_cores(2);
  ASSERT_TRUE(parts);
  EXPECT_EQ(*parts, (std::vector<std::string>{"0-2", "3-4"}));
  EXPECT_FALSE(t.split_cores(6));
}

TEST(KernelsideTopology, ReadsThisMachine) {
  // hwloc reads /sys and /proc: no root needed.
  auto t = ks::read_topology();
  ASSERT_TRUE(t) << t.error().message();
  EXPECT_GE(t->cores.size(), 1u);
  EXPECT_GE(t->numa_nodes.size(), 1u);
  EXPECT_EQ(t->cpu_count(), static_cast<unsigned>(sysconf(_SC_NPROCESSORS_ONLN)));
  EXPECT_GT(t->memory_bytes, 0u);
}
