// The sweep's summary.csv (sweep_summary.h).
#include "sweep/sweep_summary.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include "io/atomic_file.h"
#include "io/csv_writer.h"

namespace moe {

std::vector<std::vector<std::string>> parse_csv(std::string_view text) {
    std::vector<std::vector<std::string>> rows;
    std::vector<std::string> row;
    std::string field;
    bool quoted = false, any = false;
    size_t i = 0;
    while (i < text.size()) {
        char c = text[i];
        if (quoted) {
            if (c == '"') {
                if (i + 1 < text.size() && text[i + 1] == '"') {
                    field += '"';
                    i += 2;
                    continue;
                }
                quoted = false;
            } else {
                field += c;
            }
            ++i;
            continue;
        }
        if (c == '"') {
            quoted = true;
            any = true;
        } else if (c == ',') {
            row.push_back(std::move(field));
            field.clear();
            any = true;
        } else if (c == '\n' || c == '\r') {
            if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
            row.push_back(std::move(field));
            field.clear();
            rows.push_back(std::move(row));
            row.clear();
            any = false;
        } else {
            field += c;
            any = true;
        }
        ++i;
    }
    if (!quoted && (any || !field.empty())) {
        row.push_back(std::move(field));
        rows.push_back(std::move(row));
    }
    return rows;
}

std::optional<RunSummary> read_run_summary(const std::filesystem::path& run_dir) {
    std::ifstream in(run_dir / "summary.csv", std::ios::binary);
    if (!in) return std::nullopt;
    std::ostringstream ss;
    ss << in.rdbuf();
    std::vector<std::vector<std::string>> rows = parse_csv(ss.str());
    if (rows.size() < 2 || rows[0].empty()) return std::nullopt;
    RunSummary s;
    s.header = std::move(rows[0]);
    s.row = std::move(rows[1]);
    s.row.resize(s.header.size());
    for (size_t i = 0; i < s.header.size(); ++i)
        if (s.header[i] == "status") s.status = s.row[i];
    return s;
}

SweepSummaryCounts write_sweep_summary(const SweepPlan& plan,
                                       const std::filesystem::path& sweep_dir,
                                       const std::map<size_t, std::string>& failed) {
    SweepSummaryCounts counts;
    std::vector<std::string> columns;  // the runs' own columns, union in first-seen order
    struct Row {
        const PlannedRun* run;
        std::map<std::string, std::string> cells;
    };
    std::vector<Row> rows;
    auto swept = [&](const std::string& c) {
        return std::find(plan.swept_keys.begin(), plan.swept_keys.end(), c) !=
                   plan.swept_keys.end() ||
               c == "run";
    };
    for (const PlannedRun& run : plan.runs) {
        std::optional<RunSummary> s = read_run_summary(sweep_dir / run.name);
        Row row{&run, {}};
        std::string status;
        if (s) {
            for (size_t i = 0; i < s->header.size(); ++i) {
                const std::string& c = s->header[i];
                if (swept(c) || row.cells.count(c)) continue;
                if (std::find(columns.begin(), columns.end(), c) == columns.end())
                    columns.push_back(c);
                row.cells[c] = s->row[i];
            }
            status = s->status;
        } else if (auto it = failed.find(run.index); it != failed.end()) {
            if (std::find(columns.begin(), columns.end(), "status") == columns.end())
                columns.push_back("status");
            row.cells["status"] = it->second;
            status = "failed";
        } else {
            ++counts.missing;
            continue;
        }
        if (status == "completed")
            ++counts.completed;
        else if (status == "diverged")
            ++counts.diverged;
        else if (status == "interrupted")
            ++counts.interrupted;
        else
            ++counts.failed;
        rows.push_back(std::move(row));
    }
    counts.rows = rows.size();

    // (Appending piece by piece: gcc 12 warns -Wrestrict about "," + std::string.)
    std::string out = "run";
    auto cell = [&](const std::string& text) {
        out += ',';
        out += text;
    };
    for (const std::string& k : plan.swept_keys) cell(csv_quote(k));
    for (const std::string& c : columns) cell(csv_quote(c));
    out += '\n';
    for (const Row& r : rows) {
        out += csv_quote(r.run->name);
        for (const std::string& v : r.run->swept_values) cell(csv_quote(v));
        for (const std::string& c : columns) {
            auto it = r.cells.find(c);
            cell(it == r.cells.end() ? std::string() : csv_quote(it->second));
        }
        out += '\n';
    }
    write_file_atomic(sweep_dir / "summary.csv", out);
    return counts;
}

}  // namespace moe
