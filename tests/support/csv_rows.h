// A run's CSV file read back as rows keyed by column name (tests only: the writer's fields never
// hold a comma or a quote in the files these tests read).
#pragma once

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace moe::test {

using Row = std::map<std::string, std::string>;

inline std::vector<Row> read_csv(const std::filesystem::path& p) {
    std::ifstream f(p);
    std::string line;
    std::vector<std::string> header;
    std::vector<Row> rows;
    while (std::getline(f, line)) {
        std::vector<std::string> cells;
        std::stringstream ls(line);
        std::string c;
        while (std::getline(ls, c, ',')) cells.push_back(c);
        if (!line.empty() && line.back() == ',') cells.emplace_back();
        if (header.empty()) {
            header = cells;
            continue;
        }
        Row r;
        for (size_t i = 0; i < header.size() && i < cells.size(); ++i) r[header[i]] = cells[i];
        rows.push_back(r);
    }
    return rows;
}

}  // namespace moe::test
