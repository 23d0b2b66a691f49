fn main() {
    println!("scoresde");
}
